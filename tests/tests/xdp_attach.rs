//! The XDP program built by the eBPF toolchain loads, attaches to the edge interface, counts
//! port-80 traffic in `force-https stats`, and detaches on SIGTERM.

use std::time::Duration;

use fh_tests::*;

fn xdp_attached(ns: &Netns) -> bool {
    let o = output_timeout(
        &mut ns.edge_cmd(&["ip", "-details", "link", "show", &ns.veth_edge]),
        CMD_TIMEOUT,
    );
    o.out().contains("prog/xdp")
}

#[test]
fn xdp_program_attaches_counts_port80_and_detaches() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let cfg = Config::new()
        .site(Site::new("shop", &["shop.example.com"]).enforced())
        .extra(&format!(
            "[xdp]\ninterface = {}\nmode = \"generic\"",
            toml_str(&ns.veth_edge)
        ));
    let mut d = Daemon::start(&ns, &cfg);
    assert!(
        xdp_attached(&ns),
        "no XDP program on {}: {}",
        ns.veth_edge,
        d.log()
    );
    assert!(d.log().contains("XDP program attached"), "{}", d.log());

    for _ in 0..3 {
        let r = get(&ns, "shop.example.com", "/x");
        assert_eq!(r.status, 301);
    }
    let stats = json(&d.cli(&["stats", "--json"]).out());
    let xdp_keys: Vec<&String> = stats
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| k.starts_with("xdp_"))
        .collect();
    assert!(!xdp_keys.is_empty(), "no XDP counters in stats: {stats}");
    let watched: u64 = xdp_keys
        .iter()
        .filter_map(|k| stats[k.as_str()].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        watched >= 3,
        "XDP counters did not see the port-80 traffic: {stats}"
    );

    d.sigterm();
    assert!(
        d.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        d.log()
    );
    assert!(
        !xdp_attached(&ns),
        "XDP program still attached after SIGTERM"
    );
}

#[test]
fn xdp_on_a_missing_interface_is_a_clear_startup_error() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let cfg = Config::new().extra("[xdp]\ninterface = \"nosuchif0\"\nmode = \"generic\"");
    let mut d = Daemon::spawn(&ns, &cfg);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon should exit");
    assert!(!status.success());
    assert!(d.log().contains("nosuchif0"), "{}", d.log());
}
