//! Entry points of the cargo-fuzz targets (`fuzz/`), built only with the `fuzzing` feature:
//! small functions over the crate-private modules, so those stay private. Each returns what
//! the target checks; none panics on its input.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use force_https_proto::{
    head::{HeadStatus, parse_head, redirect_inputs},
    host::{normalize, parse_domain_pattern},
    response::RedirectCode,
};

use crate::{
    admin::{
        Admin,
        protocol::{Request, Response},
    },
    config::Config,
    edge::{Edge, Settings},
    metrics::Metrics,
    paths::http80::first::{self, FirstRequest},
    policy::{Policy, PolicyTable, journal::Overrides, journal::StateStore},
};

/// The port-80 first-request answer, and an independent reading of the same bytes.
#[derive(Debug)]
pub struct FirstOutcome {
    /// The response when force-https answers itself; `None` when it reads more or proxies.
    pub answer: Option<Vec<u8>>,
    /// Whether the connection goes to the proxy.
    pub proxied: bool,
    /// The request, when its head is complete and has a usable target and host.
    pub request: Option<FirstFacts>,
}

/// What the table says about a parsed first request.
#[derive(Debug)]
pub struct FirstFacts {
    /// Method token.
    pub method: Vec<u8>,
    /// Normalized host.
    pub host: String,
    /// Path and query as received (`*` for asterisk-form).
    pub path_and_query: Vec<u8>,
    /// Asterisk-form (`OPTIONS *`).
    pub asterisk: bool,
    /// The host's entry, when the table has one.
    pub entry: Option<EntryFacts>,
}

/// One table entry, as the checks need it.
#[derive(Debug)]
pub struct EntryFacts {
    /// Port-80 requests are redirected.
    pub enforced: bool,
    /// `"auto"`, `"301"` or `"308"`.
    pub redirect_code: &'static str,
    /// The request's path is under an exempt prefix of the entry.
    pub exempt: bool,
    /// A backend serves the host.
    pub has_backend: bool,
}

struct Prepared {
    text: String,
    settings: Settings,
    table: PolicyTable,
    metrics: Metrics,
}

/// Tables built so far, by config text (a target uses one or two configs).
static PREPARED: Mutex<Vec<Arc<Prepared>>> = Mutex::new(Vec::new());

fn prepared(config_text: &str) -> Result<Arc<Prepared>, String> {
    let mut cache = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cache.iter().find(|p| p.text == config_text) {
        return Ok(p.clone());
    }
    let config =
        Config::from_toml(Path::new("fuzz.toml"), config_text).map_err(|e| e.to_string())?;
    let sites: Vec<_> = config.sites.iter().cloned().map(Arc::new).collect();
    let p = Arc::new(Prepared {
        text: config_text.to_string(),
        settings: Settings::from_config(&config),
        table: PolicyTable::build(&sites, &Overrides::new(), &Overrides::new()),
        metrics: Metrics::default(),
    });
    cache.push(p.clone());
    Ok(p)
}

/// [`first::first_request`] on `bytes` with the table of `config_text` (built once).
///
/// # Errors
/// `config_text` is not a valid configuration.
pub fn first_request(config_text: &str, bytes: &[u8]) -> Result<FirstOutcome, String> {
    let p = prepared(config_text)?;
    let (answer, proxied) = match first::first_request(&p.settings, &p.table, &p.metrics, bytes) {
        FirstRequest::Incomplete => (None, false),
        FirstRequest::Proxy => (None, true),
        FirstRequest::Answer(a, _) => (Some(a), false),
    };
    let request = match parse_head(bytes, p.settings.limits.max_head_bytes) {
        HeadStatus::Complete(head) => {
            let default_host = p.settings.default_host.as_deref().map(str::as_bytes);
            redirect_inputs(&head, default_host).ok().map(|t| {
                let host = normalize(&t.authority);
                let entry = p.table.lookup(&host).map(|e| EntryFacts {
                    enforced: e.enforced,
                    redirect_code: match e.redirect_code() {
                        RedirectCode::Auto => "auto",
                        RedirectCode::Moved301 => "301",
                        RedirectCode::Permanent308 => "308",
                    },
                    exempt: e.is_exempt(t.path_and_query),
                    has_backend: e.has_backend(),
                });
                FirstFacts {
                    method: head.method.as_bytes().to_vec(),
                    host,
                    path_and_query: t.path_and_query.to_vec(),
                    asterisk: t.is_asterisk,
                    entry,
                }
            })
        }
        HeadStatus::Partial | HeadStatus::Error(_) => None,
    };
    Ok(FirstOutcome {
        answer,
        proxied,
        request,
    })
}

/// A rejected configuration: where and why.
#[derive(Debug)]
pub struct ConfigFailure {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The message `force-https check` prints.
    pub display: String,
}

/// `Config::from_toml`; for an accepted config, also builds its policy table and checks
/// that every configured domain is in it.
///
/// # Errors
/// The config is rejected (the error's position), or an accepted config loses a domain
/// (no position, a message naming it).
pub fn config(text: &str) -> Result<(), ConfigFailure> {
    let config = Config::from_toml(Path::new("fuzz.toml"), text).map_err(|e| ConfigFailure {
        line: e.line,
        column: e.column,
        display: e.to_string(),
    })?;
    let _ = Settings::from_config(&config);
    let sites: Vec<_> = config.sites.iter().cloned().map(Arc::new).collect();
    let table = PolicyTable::build(&sites, &Overrides::new(), &Overrides::new());
    for site in &config.sites {
        for d in &site.domains {
            if table.get(&d.to_string()).is_none() {
                return Err(ConfigFailure {
                    line: None,
                    column: None,
                    display: format!("domain {d} of site {} is not in the table", site.name),
                });
            }
        }
    }
    Ok(())
}

/// The state directory of [`control`]: `$FH_FUZZ_STATE_DIR`, else one per process under
/// `/dev/shm` (or the temp dir), so fsync is cheap.
fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FH_FUZZ_STATE_DIR") {
        return PathBuf::from(d);
    }
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("force-https-fuzz-{}", std::process::id()))
}

/// Configs of [`control`], by their sites.
static CONTROL_CONFIGS: Mutex<Vec<(String, Arc<Config>)>> = Mutex::new(Vec::new());

fn control_config(sites: &str) -> Result<Arc<Config>, String> {
    let mut cache = CONTROL_CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = cache.iter().find(|(s, _)| s == sites) {
        return Ok(c.clone());
    }
    let dir = state_dir();
    let text = format!(
        "[state]\ndir = {}\n{sites}",
        toml_string(&dir.to_string_lossy())
    );
    let config = Config::from_toml(Path::new("fuzz.toml"), &text).map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    cache.push((sites.to_string(), config.clone()));
    Ok(config)
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Executes each line of `lines` (at most 16) as a control request against a fresh admin
/// service over the `[[site]]`s of `sites` and an empty state directory, as the control socket would, and returns the
/// response lines. After every change the persisted overrides must equal the table's, each
/// host of a successful `enable` must be enforced (of a `disable`, not), and at the end a
/// policy reloaded from the state directory must equal the live one.
///
/// # Errors
/// One of those checks failed (the message says which), or the state directory is unusable.
pub fn control(sites: &str, lines: &str) -> Result<Vec<String>, String> {
    let requests: Vec<(&str, Request)> = lines
        .lines()
        .take(16)
        .filter_map(|l| serde_json::from_str::<Request>(l).ok().map(|r| (l, r)))
        .collect();
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let config = control_config(sites)?;
    let dir = &config.state_dir;
    for f in ["state.json", "state.journal"] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot reset {}: {e}", dir.display()));
            }
            _ => {}
        }
    }
    let edge = Arc::new(Edge::new(&config).map_err(|e| format!("{e:#}"))?);
    let admin = Admin::new(edge.clone(), None, Vec::new());
    let mut out = Vec::new();
    let mut changed = false;
    for (line, req) in requests {
        // A site change is checked over the hosts the site has once it is done.
        let site_hosts = |name: &str| -> Vec<String> {
            edge.policy
                .table()
                .entries()
                .iter()
                .filter(|e| e.site.as_ref().is_some_and(|s| s.name == name))
                .map(|e| e.pattern.to_string())
                .collect()
        };
        let change = match &req {
            Request::Enable { hosts, .. } => Some((Some(hosts.clone()), None, true)),
            Request::Disable { hosts, .. } => Some((Some(hosts.clone()), None, false)),
            Request::EnableSite { site, .. } => Some((None, Some(site.clone()), true)),
            Request::DisableSite { site, .. } => Some((None, Some(site.clone()), false)),
            Request::List | Request::Sites | Request::Stats | Request::Reload => None,
        };
        let resp: Response = admin.execute(req);
        out.push(serde_json::to_string(&resp).map_err(|e| e.to_string())?);
        let Some((hosts, site, enforce)) = change else {
            continue;
        };
        let hosts = match (hosts, site) {
            (Some(h), _) => h,
            (None, Some(name)) => site_hosts(&name),
            (None, None) => Vec::new(),
        };
        let table = edge.policy.table();
        let stored = StateStore::new(dir).read().map_err(|e| format!("{e:#}"))?;
        if stored != table.overrides() {
            return Err(format!(
                "after {line:?}: stored overrides {stored:?} differ from the table's {:?}",
                table.overrides()
            ));
        }
        if !resp.ok {
            continue;
        }
        changed = true;
        for h in &hosts {
            let key = parse_domain_pattern(h)
                .map_err(|e| format!("{h:?} was accepted but does not parse: {e}"))?
                .to_string();
            let enforced = table.get(&key).is_some_and(|e| e.enforced);
            if enforced != enforce {
                return Err(format!("after {line:?}: {key} enforced = {enforced}"));
            }
        }
    }
    if !changed {
        return Ok(out);
    }
    let reloaded = Policy::load(&config).map_err(|e| format!("reload: {e:#}"))?;
    let (live, again) = (edge.policy.table(), reloaded.table());
    let view = |t: &PolicyTable| -> Vec<(String, bool, bool)> {
        t.entries()
            .iter()
            .map(|e| (e.pattern.to_string(), e.enforced, e.overridden))
            .collect()
    };
    if view(&live) != view(&again) {
        return Err(format!(
            "the reloaded table {:?} differs from the live one {:?}",
            view(&again),
            view(&live)
        ));
    }
    Ok(out)
}

/// Header fields as names and value bytes, in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// What the direct upstream path read from a backend's bytes (`proxy::h1`).
#[derive(Debug, PartialEq, Eq)]
pub struct UpstreamRead {
    /// The final response head: status, or the error's text.
    pub head: Result<Option<u16>, String>,
    /// The framing the head gave (`Debug` text).
    pub framing: Option<String>,
    /// Whether the connection could carry another request.
    pub keep_alive: bool,
    /// Whether the head kept `Content-Length` and `Transfer-Encoding` both.
    pub both_lengths: bool,
    /// A chunked body: its bytes and trailer fields, or the error's text; `None` when the
    /// body is not chunked or the bytes ended first.
    pub chunked: Option<Result<(Vec<u8>, Fields), String>>,
}

/// Reads `bytes` as a backend's answer to a request (`HEAD` when `head_request`), fed in
/// pieces of the sizes `pieces` gives in turn (1 byte when it is empty or gives 0) as the
/// direct path reads them: `1xx` heads dropped, then a chunked body decoded.
pub fn upstream_response(bytes: &[u8], head_request: bool, pieces: &[u8]) -> UpstreamRead {
    use crate::proxy::h1::{Chunk, Chunked, Framing, parse_response};
    use bytes::BytesMut;
    const MAX_HEAD: usize = 4096;
    let mut sizes = pieces.iter().map(|&n| usize::from(n).max(1)).cycle();
    let mut fed = 0;
    let mut buf = BytesMut::new();
    let mut feed = |buf: &mut BytesMut| -> bool {
        if fed >= bytes.len() {
            return false;
        }
        let n = sizes.next().unwrap_or(1).min(bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        true
    };
    let head = loop {
        match parse_response(&mut buf, head_request, MAX_HEAD) {
            Err(e) => break Err(e.to_string()),
            Ok(Some(h)) if h.status.is_informational() && h.status != 101 => {}
            Ok(Some(h)) => break Ok(Some(h)),
            Ok(None) if !feed(&mut buf) => break Ok(None),
            Ok(None) => {}
        }
    };
    let mut out = UpstreamRead {
        head: head
            .as_ref()
            .map(|h| h.as_ref().map(|h| h.status.as_u16()))
            .map_err(Clone::clone),
        framing: None,
        keep_alive: false,
        both_lengths: false,
        chunked: None,
    };
    let Ok(Some(h)) = head else { return out };
    out.framing = Some(format!("{:?}", h.framing));
    out.keep_alive = h.keep_alive;
    out.both_lengths = h.headers.contains_key(hyper::header::CONTENT_LENGTH)
        && h.headers.contains_key(hyper::header::TRANSFER_ENCODING);
    if h.framing != Framing::Chunked {
        return out;
    }
    let mut d = Chunked::new();
    let mut body = Vec::new();
    out.chunked = loop {
        match d.decode(&mut buf) {
            Err(e) => break Some(Err(e.to_string())),
            Ok(Chunk::Data(b)) => body.extend_from_slice(&b),
            Ok(Chunk::End(t)) => {
                let t = t.iter().flatten();
                let fields = t
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect();
                break Some(Ok((body, fields)));
            }
            Ok(Chunk::More) if !feed(&mut buf) => break None,
            Ok(Chunk::More) => {}
        }
    };
    out
}

/// What the keep-alive loop read of a client's bytes (`keepalive::wire::parse_request`), and
/// the head it wrote for a response made of the same bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct KeepaliveRead {
    /// `"partial"`, `"other"` or `"request"`.
    pub outcome: &'static str,
    /// Bytes taken out of the buffer (the head, for a request).
    pub consumed: usize,
    /// Whether what is left in the buffer is exactly the input after what was taken.
    pub rest_intact: bool,
    /// The request: method, target, fields, and whether the client keeps the connection.
    pub request: Option<(String, String, Fields, bool)>,
    /// The head written for a `200` response carrying the request's fields, in both styles,
    /// or the error.
    pub heads: [Result<Vec<u8>, String>; 2],
}

/// Reads `bytes` as a client's first bytes on a keep-alive connection, fed whole after
/// growing prefixes (as reads would bring them), then writes a response head with the
/// request's fields (Title-Case without `Date`, and as held with one).
pub fn keepalive_head(bytes: &[u8], max_head: usize) -> KeepaliveRead {
    use crate::keepalive::wire::{
        BodyLength, FieldOffsets, Names, Parsed, encode_response_head, parse_request,
    };
    use bytes::BytesMut;
    let mut fields = FieldOffsets::new();
    // Growing prefixes: a prefix is `Partial`, or the same outcome as the whole.
    let mut buf = BytesMut::new();
    let mut parsed = Parsed::Partial;
    for &b in bytes {
        buf.extend_from_slice(&[b]);
        parsed = parse_request(&mut buf, max_head, &mut fields);
        if !matches!(parsed, Parsed::Partial) {
            break;
        }
    }
    let mut whole = BytesMut::from(bytes);
    let again = parse_request(&mut whole, max_head, &mut fields);
    let consumed = bytes.len() - whole.len();
    let mut out = KeepaliveRead {
        outcome: match again {
            Parsed::Partial => "partial",
            Parsed::Other => "other",
            Parsed::Request { .. } => "request",
        },
        consumed,
        rest_intact: whole[..] == bytes[consumed..],
        request: None,
        heads: [Ok(Vec::new()), Ok(Vec::new())],
    };
    // The first prefix that was not `Partial` decided as the whole does (a head ends where
    // it ends; a longer input only adds bytes after it).
    let same_kind = matches!(
        (&parsed, &again),
        (Parsed::Partial, Parsed::Partial)
            | (Parsed::Other, Parsed::Other)
            | (Parsed::Request { .. }, Parsed::Request { .. })
    );
    if !same_kind {
        out.outcome = "prefix disagrees";
    }
    if let Parsed::Request {
        request,
        keep_alive,
    } = again
    {
        let fields: Vec<_> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let (parts, ()) = {
            let mut r = hyper::Response::new(());
            *r.headers_mut() = request.headers().clone();
            r.into_parts()
        };
        let styles = [
            (Names::TitleCase, None),
            (Names::AsHeld, Some(&b"Mon, 01 Jan 2001 00:00:00 GMT"[..])),
        ];
        for (slot, (names, date)) in out.heads.iter_mut().zip(styles) {
            let mut head = Vec::new();
            let body = Some(BodyLength::Unknown);
            *slot = encode_response_head(&mut head, &parts, body, false, keep_alive, names, date)
                .map(|_| head)
                .map_err(|e| format!("{e:?}"));
        }
        out.request = Some((
            request.method().to_string(),
            request.uri().to_string(),
            fields,
            keep_alive,
        ));
    }
    out
}
