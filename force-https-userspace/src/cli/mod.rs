//! The command line: clap definitions, and the client side of every subcommand.
//!
//! `run` starts the daemon; every other command is a short-lived client that talks to a
//! running daemon over its control socket (or, for `check`, only reads files; for
//! `preload-check`, only talks HTTP and HTTPS to a host). Failures map to the distinct exit
//! codes documented in `--help`.

mod docs;
mod preload;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    admin::protocol::{self as control, ClientError, ErrorCode, Request, Response},
    config::{Config, DEFAULT_CONFIG, DEFAULT_CONTROL_SOCKET},
};

/// Exit statuses, for `--help` and the manual page.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "other error (I/O, a failure reported by the daemon)"),
    ("2", "usage error, or an invalid configuration file"),
    (
        "3",
        "the daemon is not running (no control socket, or nobody listening on it)",
    ),
    (
        "4",
        "invalid host name, or unknown site for --site (nothing was changed)",
    ),
    (
        "5",
        "permission denied on the control socket (it is mode 0600: run as the daemon's user)",
    ),
    (
        "6",
        "with [fleet]: etcd is unreachable, nothing was changed (retry, or use --local)",
    ),
    (
        "preload-check",
        "0 preloadable, 1 not preloadable, 2 usage error",
    ),
];

/// Files, for `--help` and the manual page.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/force-https/config.toml",
        "configuration (see `force-https check`)",
    ),
    (
        "/var/lib/force-https/state.json",
        "runtime enable/disable changes (snapshot), restored at start",
    ),
    (
        "/var/lib/force-https/state.journal",
        "changes since the snapshot, merged into it at start",
    ),
    (
        "/var/lib/force-https/fleet.json, fleet.journal",
        "with [fleet]: the last known fleet table from etcd, kept for restarts during an outage",
    ),
    (
        "/run/force-https/control.sock",
        "control socket of the running daemon",
    ),
    (
        "/etc/force-https/admin.token",
        "bearer token of the admin HTTP API ([admin] token_file; mode 0600 or 0400)",
    ),
];

/// Environment variables, for `--help` and the manual page.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "log filter of `force-https run` (default: info)",
    ),
    (
        "FORCE_HTTPS_CONFIG",
        "configuration file, instead of --config",
    ),
    (
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "set by systemd (Type=notify): readiness and watchdog of `force-https run`",
    ),
];

/// Examples, for the manual page.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Validate the configuration, then run the daemon in the foreground:",
        "force-https check && force-https run",
    ),
    (
        "Enforce HTTPS for a host and its subdomains at once, persisted:",
        "force-https enable shop.example.com '*.shop.example.com'",
    ),
    (
        "Enforce a list of hosts from a file, one per line:",
        "force-https enable --from-file hosts.txt",
    ),
    (
        "Enforce HTTPS on every domain and wildcard of the site \"shop\" at once:",
        "force-https enable --site shop",
    ),
    (
        "Show every host and its counters as JSON:",
        "force-https list --json",
    ),
    (
        "Show each site's state (enforced, not enforced, or mixed with its exceptions):",
        "force-https list --sites",
    ),
    (
        "Check whether a domain can be preloaded, against this edge:",
        "force-https preload-check example.com --connect 203.0.113.10",
    ),
    (
        "Install the manual pages and bash completions:",
        "force-https man --out-dir /usr/share/man/man8 && force-https completions bash > /etc/bash_completion.d/force-https",
    ),
];

/// The text after `--help`: exit statuses, files and environment.
fn after_help() -> String {
    let mut out = String::new();
    for (title, rows) in [
        ("EXIT STATUS", EXIT_STATUS),
        ("FILES", FILES),
        ("ENVIRONMENT", ENVIRONMENT),
    ] {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(title);
        out.push_str(":\n");
        let w = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        for (tag, text) in rows {
            out.push_str(&format!("  {tag:<w$}  {text}\n"));
        }
    }
    out.trim_end().to_string()
}

/// force-https: make websites reachable over HTTPS only.
#[derive(Debug, Parser)]
#[command(
    name = "force-https",
    version,
    about = "Make websites reachable over HTTPS only: redirect port 80 to HTTPS, terminate TLS and add HSTS",
    long_about = "force-https is an edge daemon. Every request for an enforced host that arrives on \
port 80 gets a permanent redirect (301 for GET/HEAD, 308 otherwise) to the same URL over HTTPS; \
every HTTPS response for an enforced host carries Strict-Transport-Security. Hosts that are not \
enforced, and exempt paths such as ACME challenges, are proxied to the site's backend.\n\n\
`force-https run` is the daemon. The other commands change or inspect a running daemon through \
its control socket; changes take effect at once and are persisted across restarts.",
    after_long_help = after_help(),
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct BulkArgs {
    /// Also read hosts from FILE, one per line (`-`: standard input); blank lines and lines
    /// starting with `#` are skipped.
    ///
    /// Every name is checked before anything is sent, so one invalid name changes nothing
    /// (exit 4). Large lists are sent in batches of 100000 hosts, each persisted before the
    /// next: if the command fails midway, run it again (it is idempotent).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LocalArg {
    /// With [fleet]: change this node only, not the fleet.
    ///
    /// Without --local, on a daemon with [fleet] the change is written to etcd and reaches
    /// every node (this one through its watch); when etcd is unreachable it fails with exit
    /// 6 and nothing is changed. With --local it is a node-only override, kept in state.dir,
    /// that wins over the fleet's value until it is set back to that value; `list` shows it
    /// as `local`. Meant for emergencies (etcd down, one misbehaving node). Without [fleet]
    /// every change is local and --local changes nothing.
    #[arg(long)]
    local: bool,
}

#[derive(Debug, Args)]
struct SiteArg {
    /// Change every domain and wildcard of the site NAME at once, in one persisted step.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["hosts", "from_file"])]
    site: Option<String>,
}

/// Hosts per control request of a bulk change.
const BULK_BATCH: usize = 100_000;

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "FORCE_HTTPS_CONFIG",
        default_value = DEFAULT_CONFIG
    )]
    config: PathBuf,
}

/// How the client finds the daemon's control socket.
#[derive(Debug, Args)]
struct ControlArgs {
    /// Control socket of the daemon [default: from --config, else /run/force-https/control.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Read the control socket path from this configuration file.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "control")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (as systemd does).
    ///
    /// Binds the [listen] addresses, restores runtime host changes from the state directory,
    /// opens the control socket and, with an [xdp] section, attaches the XDP program.
    /// SIGTERM or SIGINT stops accepting, drains in-flight connections (limits.drain_timeout_ms)
    /// and exits 0. SIGHUP reloads the configuration file (as `reload`). Logs go to stderr;
    /// RUST_LOG filters them; the access log ([log] access = "json") goes to stdout or
    /// [log] path.
    Run(ConfigArg),
    /// Validate a configuration file and the certificates it names.
    ///
    /// Prints "ok" and exits 0 when the file is valid; otherwise prints every problem with
    /// its line and column and exits 2. Nothing is changed. Warnings go to stderr and leave
    /// the exit status 0: a site whose HSTS has `preload = true` without
    /// `include_subdomains`, or with `max_age` under 31536000 (one year), which
    /// hstspreload.org would refuse. Preloading is opt-in and hard to undo.
    Check(ConfigArg),
    /// Enforce HTTPS for hosts, or a whole site, on the running daemon.
    ///
    /// Each HOST is a name (shop.example.com) or a one-label wildcard (*.example.com);
    /// internationalized names are converted to A-labels. A host that belongs to no site is
    /// redirected only. The change is persisted before this command returns and is in effect
    /// at once, on the XDP fast path too. An invalid name changes nothing and exits 4.
    ///
    /// With --site NAME, every domain and wildcard of the site (and every runtime name under
    /// its wildcards) is enforced together, in one persisted step: all or nothing. Host-level
    /// exceptions can be made afterwards with `disable HOST`. An unknown site exits 4.
    Enable {
        /// Host names or wildcards.
        #[arg(required_unless_present_any = ["from_file", "site"], value_name = "HOST")]
        hosts: Vec<String>,
        #[command(flatten)]
        bulk: BulkArgs,
        #[command(flatten)]
        site: SiteArg,
        #[command(flatten)]
        local: LocalArg,
        #[command(flatten)]
        target: ControlArgs,
    },
    /// Stop enforcing HTTPS for hosts, or a whole site, on the running daemon.
    ///
    /// A site's host is proxied to its backend again; a host added with `enable` alone is
    /// removed. Persisted before this command returns. With --site NAME, every host of the
    /// site changes together, in one persisted step (runtime names under its wildcards are
    /// removed).
    Disable {
        /// Host names or wildcards.
        #[arg(required_unless_present_any = ["from_file", "site"], value_name = "HOST")]
        hosts: Vec<String>,
        #[command(flatten)]
        bulk: BulkArgs,
        #[command(flatten)]
        site: SiteArg,
        #[command(flatten)]
        local: LocalArg,
        #[command(flatten)]
        target: ControlArgs,
    },
    /// List every host: its site, where it comes from, whether it is enforced, its counters.
    ///
    /// SOURCE says what decides the state: config, fleet (a key in etcd, with [fleet]), local
    /// (a node-only override, with [fleet]) or runtime. In the ENFORCED column, `*` marks a
    /// config host whose state a runtime override decides.
    /// With --sites, one line per site instead: its state (enforced, not-enforced, or mixed
    /// when host-level overrides differ), how many of its hosts are enforced, its config
    /// default, and the exceptions of a mixed site.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// List sites instead of hosts.
        #[arg(long)]
        sites: bool,
        #[command(flatten)]
        target: ControlArgs,
    },
    /// Show the daemon's global counters.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ControlArgs,
    },
    /// Reload the configuration file and the certificates without dropping connections.
    ///
    /// Re-reads the whole file the daemon was started with: sites, domains, backends,
    /// exempt and force paths, HSTS, redirect codes, [redirect], [limits] and [log] apply to
    /// the requests that start after it; requests in flight finish on the configuration they
    /// started with, and runtime enable/disable changes keep winning. What cannot change in
    /// a running daemon (listen addresses, [state], [xdp], [metrics], [proxy], [tls] settings,
    /// limits.max_connections and idle_timeout_ms) keeps its running value and is named as
    /// needing a restart. An invalid file or a certificate that cannot be loaded changes
    /// nothing: the error is printed (FILE: line N, column M: ...) and the exit status is 1.
    /// SIGHUP does the same (the result goes to the daemon's log).
    Reload {
        #[command(flatten)]
        target: ControlArgs,
    },
    /// Check that a domain meets the hstspreload.org requirements (exit 0: preloadable).
    ///
    /// Runs the checks of the hstspreload tool against the running edge (--connect) or any
    /// host: the domain's shape, the TLS certificate chain, the Strict-Transport-Security
    /// header of https://DOMAIN/, the redirects from http://DOMAIN/ and https://DOMAIN/, and
    /// HTTPS on www.DOMAIN. Prints one line per check with the tool's issue codes, then a
    /// verdict. Needs no daemon and changes nothing.
    #[command(after_long_help = preload::LONG_HELP)]
    PreloadCheck(preload::PreloadArgs),
    /// Write the manual page, force-https(8), generated from these same definitions.
    ///
    /// Without --out-dir the page goes to standard output (`force-https man | man -l -`);
    /// with it, that page and one per subcommand (force-https-run.8, ...) are written there.
    Man {
        /// Directory to write the pages into, e.g. /usr/share/man/man8.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the completion script for a shell on standard output.
    ///
    /// bash: `force-https completions bash > /etc/bash_completion.d/force-https`;
    /// zsh: into a directory of $fpath as `_force-https`; fish: into
    /// ~/.config/fish/completions/force-https.fish.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match e {
            ClientError::NotRunning(..) => 3,
            ClientError::PermissionDenied(_) => 5,
            ClientError::Other(_) => 1,
        };
        fail(code, e.to_string())
    }
}

impl ControlArgs {
    fn socket(&self) -> Result<PathBuf, Failure> {
        if let Some(p) = &self.control {
            return Ok(p.clone());
        }
        if let Some(c) = &self.config {
            return Config::load(c)
                .map(|c| c.control_socket)
                .map_err(|e| fail(2, e.to_string()));
        }
        Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET))
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // An empty message: the command already said why (preload-check's verdict).
            if !f.message.is_empty() {
                eprintln!("force-https: error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(c) => run_daemon(&c.config),
        Command::Check(c) => check(&c.config),
        Command::Enable {
            site: SiteArg { site: Some(name) },
            local,
            target,
            ..
        } => set_site(&target, &name, true, local.local),
        Command::Disable {
            site: SiteArg { site: Some(name) },
            local,
            target,
            ..
        } => set_site(&target, &name, false, local.local),
        Command::Enable {
            hosts,
            bulk,
            local,
            target,
            ..
        } => set(&target, with_file(hosts, &bulk)?, true, local.local),
        Command::Disable {
            hosts,
            bulk,
            local,
            target,
            ..
        } => set(&target, with_file(hosts, &bulk)?, false, local.local),
        Command::List {
            json,
            sites: true,
            target,
        } => list_sites(&target, json),
        Command::List { json, target, .. } => list(&target, json),
        Command::Stats { json, target } => stats(&target, json),
        Command::PreloadCheck(args) => match preload::run(&args)? {
            true => Ok(()),
            false => Err(fail(1, "")),
        },
        Command::Man { out_dir } => docs::man(out_dir.as_deref())
            .map_err(|e| fail(1, format!("cannot write the manual page: {e}"))),
        Command::Completions { shell } => {
            docs::completions(shell);
            Ok(())
        }
        Command::Reload { target } => {
            let r = call(&target, &Request::Reload)?;
            println!("{}", r.message.unwrap_or_else(|| "reloaded".into()));
            Ok(())
        }
    }
}

fn call(target: &ControlArgs, req: &Request) -> Result<Response, Failure> {
    let socket = target.socket()?;
    let r = control::call(&socket, req)?;
    if r.ok {
        return Ok(r);
    }
    let code = match r.code {
        Some(ErrorCode::InvalidHost | ErrorCode::UnknownSite) => 4,
        Some(ErrorCode::BadRequest) => 2,
        Some(ErrorCode::FleetUnavailable) => 6,
        Some(ErrorCode::Internal | ErrorCode::Unknown) | None => 1,
    };
    Err(fail(
        code,
        r.error
            .unwrap_or_else(|| "the daemon reported an error".into()),
    ))
}

fn run_daemon(path: &Path) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(path).map_err(|e| fail(2, e.to_string()))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // One CPU to run on (cpuset, affinity): a single-threaded scheduler does the same work
    // without the multi-thread scheduler's cross-thread wakeups. The AF_XDP responders are
    // threads of their own either way.
    crate::daemon::fix_mmap_threshold();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the runtime: {e}")))?;
    tracing::debug!(cpus, "runtime started");
    rt.block_on(crate::daemon::run(config))
        .map_err(|e| fail(1, format!("{e:#}")))
}

fn check(path: &Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| fail(2, e.to_string()))?;
    if let Some(t) = config.admin.as_ref().and_then(|a| a.token_file.as_deref())
        && let Err(e) = crate::admin::http_api::load_token(t)
    {
        return Err(fail(2, format!("{}: {e:#}", path.display())));
    }
    let cert_errors = crate::paths::tls::certs::check(&config);
    if !cert_errors.is_empty() {
        return Err(fail(
            2,
            format!("{}: {}", path.display(), cert_errors.join("\n  ")),
        ));
    }
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: ok ({} site(s), {} domain(s))",
        path.display(),
        config.sites.len(),
        config.sites.iter().map(|s| s.domains.len()).sum::<usize>()
    );
    Ok(())
}

/// The hosts given as arguments plus those of `--from-file`.
fn with_file(mut hosts: Vec<String>, bulk: &BulkArgs) -> Result<Vec<String>, Failure> {
    let Some(path) = &bulk.from_file else {
        return Ok(hosts);
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| fail(2, format!("cannot read hosts from {}: {e}", path.display())))?;
    hosts.extend(hosts_of(&text));
    if hosts.is_empty() {
        return Err(fail(2, format!("no host in {}", path.display())));
    }
    Ok(hosts)
}

/// The hosts of a `--from-file` text: one per line, blank lines and `#` comments skipped.
fn hosts_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
}

fn set(
    target: &ControlArgs,
    hosts: Vec<String>,
    enforce: bool,
    local: bool,
) -> Result<(), Failure> {
    // Validate locally first, so a typo gets exit 4 even before the daemon is asked.
    for (i, h) in hosts.iter().enumerate() {
        if let Err(e) = force_https_proto::host::parse_domain_pattern(h) {
            let at = if hosts.len() > 1 {
                format!(" (host {} of {})", i + 1, hosts.len())
            } else {
                String::new()
            };
            return Err(fail(4, format!("invalid host name {h:?}{at}: {e}")));
        }
    }
    let verb = if enforce { "enforced" } else { "not enforced" };
    let total = hosts.len();
    let mut changed_total = 0;
    for batch in hosts.chunks(BULK_BATCH) {
        let hosts = batch.to_vec();
        let req = if enforce {
            Request::Enable { hosts, local }
        } else {
            Request::Disable { hosts, local }
        };
        let changed = call(target, &req)?.changed.unwrap_or_default();
        changed_total += changed.len();
        if total <= BULK_BATCH {
            for h in &changed {
                println!("{h}: {verb}");
            }
        }
    }
    if changed_total == 0 {
        println!("no change: already {verb}");
    } else if total > BULK_BATCH {
        println!("{changed_total} of {total} host(s) changed: {verb}");
    }
    Ok(())
}

fn set_site(target: &ControlArgs, name: &str, enforce: bool, local: bool) -> Result<(), Failure> {
    let req = if enforce {
        Request::EnableSite {
            site: name.into(),
            local,
        }
    } else {
        Request::DisableSite {
            site: name.into(),
            local,
        }
    };
    let changed = call(target, &req)?.changed.unwrap_or_default();
    let verb = if enforce { "enforced" } else { "not enforced" };
    for h in &changed {
        println!("{h}: {verb}");
    }
    if changed.is_empty() {
        println!("site {name}: no change: already {verb}");
    } else {
        println!("site {name}: {verb} ({} host(s) changed)", changed.len());
    }
    Ok(())
}

fn list_sites(target: &ControlArgs, json: bool) -> Result<(), Failure> {
    let sites = call(target, &Request::Sites)?.sites.unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&sites).map_err(|e| fail(1, e.to_string()))?
        );
        return Ok(());
    }
    let w = sites.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<w$}  {:<12}  {:>8}  {:<6}  EXCEPTIONS",
        "SITE", "STATE", "ENFORCED", "CONFIG"
    );
    for s in &sites {
        let total = s.enforced.len() + s.not_enforced.len();
        let exceptions = match s.exceptions() {
            None => "-".to_string(),
            Some((enforced, hosts)) => format!(
                "{}: {}",
                if enforced { "enforced" } else { "not enforced" },
                hosts.join(",")
            ),
        };
        println!(
            "{:<w$}  {:<12}  {:>8}  {:<6}  {exceptions}",
            s.name,
            s.state.replace('_', "-"),
            format!("{}/{total}", s.enforced.len()),
            if s.config_force_https { "yes" } else { "no" },
        );
    }
    Ok(())
}

fn list(target: &ControlArgs, json: bool) -> Result<(), Failure> {
    let r = call(target, &Request::List)?;
    let hosts = r.hosts.unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&hosts).map_err(|e| fail(1, e.to_string()))?
        );
        return Ok(());
    }
    let w = hosts.iter().map(|h| h.host.len()).max().unwrap_or(4).max(4);
    let sw = hosts
        .iter()
        .map(|h| h.site.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<sw$}  {:<7}  {:<8}  {:>10}  {:>10}  PATHS",
        "HOST", "SITE", "SOURCE", "ENFORCED", "REDIRECTS", "PROXIED"
    );
    for h in hosts {
        let enforced = match (h.enforced, h.overridden && h.source == "config") {
            (true, true) => "yes*",
            (true, false) => "yes",
            (false, true) => "no*",
            (false, false) => "no",
        };
        // Which paths are redirected: all of them, or the site's force_paths.
        let paths = if h.force_paths.is_empty() {
            "all".to_string()
        } else {
            h.force_paths.join(",")
        };
        println!(
            "{:<w$}  {:<sw$}  {:<7}  {:<8}  {:>10}  {:>10}  {paths}",
            h.host,
            h.site.as_deref().unwrap_or("-"),
            h.source,
            enforced,
            h.redirects,
            h.proxied
        );
    }
    Ok(())
}

fn stats(target: &ControlArgs, json: bool) -> Result<(), Failure> {
    let r = call(target, &Request::Stats)?;
    let stats = r.stats.unwrap_or_default();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = stats
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&map).map_err(|e| fail(1, e.to_string()))?
        );
        return Ok(());
    }
    let w = stats.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in stats {
        println!("{k:<w$}  {v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_skips_blanks_and_comments() {
        let v: Vec<_> = hosts_of("# fleet\n a.example \n\n*.b.example\r\n#x\n").collect();
        assert_eq!(v, ["a.example", "*.b.example"]);
    }
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
