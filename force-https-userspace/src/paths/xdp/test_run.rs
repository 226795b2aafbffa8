//! The XDP program run by the kernel on frames we give it (`BPF_PROG_TEST_RUN`, no network):
//! the SYN-ACK it makes is byte for byte the one `force_https_proto::frame::syn_ack_in_place`
//! describes, over IPv4 and IPv6, and its cookie is one the program accepts on the
//! connection's first data segment (a wrong one is dropped).
//!
//! Each test runs on a thread of its own inside a private network namespace (the program's
//! socket lookup and `tcp_syncookies` are per namespace), with listeners on the loopback
//! addresses. Needs root: skipped when not root, except under `CI=true`, where that fails.

use std::net::TcpListener;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use force_https_common::{PROG_NAME, STAT_SYNACK_TX, SYNACK_TX, Settings};
use force_https_proto::frame::{self, TH_ACK, TH_PSH, TH_SYN};

use super::loader;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// Whether the test can run; panics under `CI=true` when it cannot.
fn root() -> bool {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "XDP test_run tests need root (CAP_BPF, CAP_NET_ADMIN) under CI=true"
    );
    eprintln!("skipped: not root");
    false
}

/// Runs `f` on a new thread inside a new network namespace with `lo` up,
/// `tcp_syncookies = 2` and listeners on 127.0.0.1:80 and [::1]:80.
fn in_private_netns(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscall; only this thread changes namespace.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            let st = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip link set lo up");
            assert!(st.success());
            std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2\n").expect("tcp_syncookies");
            let _v4 = TcpListener::bind("127.0.0.1:80").expect("listen 127.0.0.1:80");
            let _v6 = TcpListener::bind("[::1]:80").expect("listen [::1]:80");
            f();
        })
        .join()
        .expect("test thread");
    });
}

/// A client frame `lo:40000 → lo:80` (loopback addresses) with `flags`, TCP `opts` and
/// `payload`; `seq` and `ack` as given.
fn client_frame(v6: bool, flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    client_frame_from(40000, v6, flags, seq, ack, opts, payload)
}

/// [`client_frame`] from source port `sport`.
fn client_frame_from(
    sport: u16,
    v6: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let tcp_len = 20 + opts.len() + payload.len();
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        let lo = std::net::Ipv6Addr::LOCALHOST.octets();
        f.extend_from_slice(&lo);
        f.extend_from_slice(&lo);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.push((((20 + opts.len()) / 4) as u8) << 4);
    f.push(flags);
    f.extend_from_slice(&64240u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(opts);
    f.extend_from_slice(payload);
    f
}

/// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
const LINUX_SYN_OPTS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn run(prog: &Xdp, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 512];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

#[test]
fn synack_is_the_reference_bytes_and_its_cookie_is_accepted() {
    if !root() {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = loader::load(1024, 1024, 1, &[80], 443).expect("load the XDP program");
        loader::write_settings(
            &mut ebpf,
            Settings {
                fixed_len: loader::fixed_response_len(443),
                ready: 1,
                fin_tx: 1,
                synack: SYNACK_TX,
                mss_v4: 1460,
                mss_v6: 1440,
            },
        )
        .expect("settings");
        let prog: &Xdp = ebpf
            .program(PROG_NAME)
            .expect("program")
            .try_into()
            .expect("an XDP program");
        for (sport, v6, opts, mss) in [
            (40001, false, &LINUX_SYN_OPTS[..], 1460u16),
            (40002, true, &LINUX_SYN_OPTS[..], 1440),
            // No options: the frame grows by the MSS option.
            (40003, false, &[][..], 1460),
            (40004, true, &[][..], 1440),
        ] {
            let syn = client_frame_from(sport, v6, TH_SYN, 1000, 0, opts, b"");
            let (action, out) = run(prog, &syn);
            assert_eq!(action, XDP_TX, "v6={v6} opts={opts:?}");
            let parsed_syn = frame::parse(&syn).expect("SYN frame");
            let cookie = frame::parse(&out).expect("SYN-ACK frame").seq;
            let mut want = syn.clone();
            want.resize(512, 0);
            let n = frame::syn_ack_in_place(&mut want, &parsed_syn, cookie, mss)
                .expect("reference SYN-ACK");
            assert_eq!(
                out,
                want[..n],
                "v6={v6} opts={opts:?}: not the reference bytes"
            );
            assert!(frame::checksums_ok(&out));

            // The handshake's first data segment with another cookie is dropped; with that
            // cookie it is taken (passed here, as no host is in the map, and its flow
            // remembered: so the wrong cookie goes first, and each case has its own port).
            let req = b"GET / HTTP/1.1\r\nHost: nope.example.test\r\n\r\n";
            let bad =
                client_frame_from(sport, v6, TH_ACK | TH_PSH, 1001, cookie ^ 0x5a5a, &[], req);
            assert_eq!(run(prog, &bad).0, XDP_DROP, "v6={v6}: bad cookie taken");
            let ack = cookie.wrapping_add(1);
            let good = client_frame_from(sport, v6, TH_ACK | TH_PSH, 1001, ack, &[], req);
            assert_eq!(run(prog, &good).0, XDP_PASS, "v6={v6}: cookie refused");
        }
        // Counted as answered in XDP.
        let stats: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(
            ebpf.map(force_https_common::MAP_STATS).expect("stats map"),
        )
        .expect("stats");
        let n: u64 = stats.get(&STAT_SYNACK_TX, 0).expect("counter").iter().sum();
        assert_eq!(n, 4);
    });
}

#[test]
fn synack_off_passes_the_syn() {
    if !root() {
        return;
    }
    in_private_netns(|| {
        let ebpf = loader::load(1024, 1024, 1, &[80, 81], 443).expect("load the XDP program");
        // The settings as loaded: SYNs are the kernel's until userspace says otherwise.
        let prog: &Xdp = ebpf
            .program(PROG_NAME)
            .expect("program")
            .try_into()
            .expect("an XDP program");
        let syn = client_frame(false, TH_SYN, 1000, 0, &LINUX_SYN_OPTS, b"");
        let (action, out) = run(prog, &syn);
        assert_eq!((action, out), (XDP_PASS, syn));
        // A SYN with data, or SYN|ACK, is never answered.
        let mut ebpf = ebpf;
        let mut s = Settings {
            synack: SYNACK_TX,
            mss_v4: 1460,
            mss_v6: 1440,
            ..Settings::default()
        };
        loader::write_settings(&mut ebpf, s).expect("settings");
        let prog: &Xdp = ebpf.program(PROG_NAME).unwrap().try_into().unwrap();
        for f in [
            client_frame(false, TH_SYN, 1000, 0, &[], b"data"),
            client_frame(false, TH_SYN | TH_ACK, 1000, 0, &[], b""),
        ] {
            assert_eq!(run(prog, &f), (XDP_PASS, f.clone()));
        }
        // No listener on a watched port: passed (the kernel resets).
        s.synack = SYNACK_TX;
        let mut other = client_frame(false, TH_SYN, 1000, 0, &[], b"");
        other[36] = 0;
        other[37] = 81;
        loader::write_settings(&mut ebpf, s).expect("settings");
        let prog: &Xdp = ebpf.program(PROG_NAME).unwrap().try_into().unwrap();
        assert_eq!(run(prog, &other).0, XDP_PASS);
    });
}
