//! Certificates of the TLS listeners: loading, SNI selection and reload.
//!
//! rustls with the aws-lc-rs provider (see README, "TLS"): TLS 1.2 and 1.3 only, the
//! provider's default (AEAD, forward-secret) suites, ALPN `h2` and `http/1.1`, session tickets
//! plus a server-side session cache. The certificate for a connection is chosen from the SNI:
//! exact site domain, then a one-label wildcard, then `[tls] default_cert`. Certificates live
//! behind an [`ArcSwap`], so a reload swaps them without touching connections; a file that
//! fails to load keeps its previous certificate in service. A configuration reload loads the
//! certificates of the new configuration first ([`CertStore::prepare`]) and puts them in
//! service only when every one loaded ([`CertStore::commit`]).

use foldhash::HashMap;
use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context, anyhow, bail};
use arc_swap::ArcSwap;
use force_https_proto::host::{DomainPattern, wildcard_parent};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache},
    sign::CertifiedKey,
};

use crate::config::{Config, TlsFiles};

/// Which certificate serves which names.
#[derive(Debug, Clone)]
struct CertSource {
    /// `None` for the default certificate.
    names: Option<Vec<DomainPattern>>,
    files: TlsFiles,
}

/// A certificate's identity: its certificate and key files. It stays the same across reloads
/// (a reloaded certificate is a new `CertifiedKey` from the same files).
pub type CertFiles = Arc<(PathBuf, PathBuf)>;

/// A loaded certificate and the files it came from.
#[derive(Clone)]
struct Cert {
    key: Arc<CertifiedKey>,
    files: CertFiles,
}

/// The loaded certificates, by name. foldhash rather than SipHash: the keys come from the
/// configuration (a client's SNI or `:authority` only looks up), and every HTTP/2 request
/// looks its authority up here.
#[derive(Default)]
pub(super) struct CertMap {
    exact: HashMap<String, Cert>,
    wildcard: HashMap<String, Cert>,
    default: Option<Cert>,
    /// Loaded key per file pair, so a failed reload can keep the previous one.
    by_files: HashMap<(PathBuf, PathBuf), Arc<CertifiedKey>>,
}

impl CertMap {
    /// The certificate for a server name (SNI or a request's host): exact name, one-label
    /// wildcard, then the default certificate.
    fn lookup(&self, name: Option<&str>) -> Option<&Cert> {
        let named = name.and_then(|n| {
            // A request's host (`Presented::covers` asks on every request) is already lower
            // case without a final dot: no copy then.
            let n = n.trim_end_matches('.');
            let n: std::borrow::Cow<'_, str> = if n.bytes().any(|b| b.is_ascii_uppercase()) {
                n.to_ascii_lowercase().into()
            } else {
                n.into()
            };
            self.exact
                .get(&*n)
                .or_else(|| wildcard_parent(&n).and_then(|p| self.wildcard.get(p)))
        });
        named.or(self.default.as_ref())
    }

    pub(super) fn knows(&self, sni: Option<&str>) -> bool {
        self.lookup(sni).is_some()
    }

    /// The files of the certificate that serves `name`.
    pub(super) fn files_for(&self, name: Option<&str>) -> Option<CertFiles> {
        self.lookup(name).map(|c| c.files.clone())
    }

    /// Whether `name` is served by the certificate made of `files` (no copy of them).
    pub(super) fn serves_with(&self, name: &str, files: &CertFiles) -> bool {
        self.lookup(Some(name)).is_some_and(|c| c.files == *files)
    }
}

/// The certificate store and rustls configuration of the TLS listeners.
pub struct CertStore {
    /// Which files serve which names (replaced by a configuration reload).
    sources: Mutex<Vec<CertSource>>,
    /// Shared with the rustls resolver: a store here is what the next handshake sees.
    pub(super) map: Arc<ArcSwap<CertMap>>,
    pub(super) config: Arc<ServerConfig>,
}

#[derive(Debug)]
struct Resolver(Arc<ArcSwap<CertMap>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .load()
            .lookup(hello.server_name())
            .map(|c| c.key.clone())
    }
}

impl std::fmt::Debug for CertMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CertMap({} exact, {} wildcard)",
            self.exact.len(),
            self.wildcard.len()
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads a PEM chain and key, checking that they belong together.
pub fn load_certified_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read certificate file {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in certificate file {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate found in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from {}", files.key.display()))?;
    let ck = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        anyhow!(
            "certificate {} and key {} do not work together: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(ck)
}

fn sources(config: &Config) -> Vec<CertSource> {
    let mut v: Vec<CertSource> = config
        .sites
        .iter()
        .filter_map(|s| {
            s.tls.as_ref().map(|t| CertSource {
                names: Some(s.domains.clone()),
                files: t.clone(),
            })
        })
        .collect();
    if let Some(d) = &config.tls.default_cert {
        v.push(CertSource {
            names: None,
            files: d.clone(),
        });
    }
    v
}

/// Loads every source. Failures keep `previous`'s key for that file pair, if any, and are
/// reported in the returned list.
fn build_map(sources: &[CertSource], previous: Option<&CertMap>) -> (CertMap, Vec<String>) {
    let mut map = CertMap::default();
    let mut errors = Vec::new();
    for s in sources {
        let key = (s.files.cert.clone(), s.files.key.clone());
        let ck = match map.by_files.get(&key) {
            Some(ck) => Some(ck.clone()),
            None => match load_certified_key(&s.files) {
                Ok(ck) => Some(Arc::new(ck)),
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    previous.and_then(|p| p.by_files.get(&key).cloned())
                }
            },
        };
        let Some(ck) = ck else { continue };
        map.by_files.insert(key.clone(), ck.clone());
        let ck = Cert {
            key: ck,
            files: Arc::new(key),
        };
        match &s.names {
            None => map.default = Some(ck),
            Some(names) => {
                for n in names {
                    match n {
                        DomainPattern::Exact(h) => map.exact.insert(h.clone(), ck.clone()),
                        DomainPattern::Wildcard(s) => map.wildcard.insert(s.clone(), ck.clone()),
                    };
                }
            }
        }
    }
    (map, errors)
}

/// Checks every certificate of a config (for `force-https check`).
pub fn check(config: &Config) -> Vec<String> {
    build_map(&sources(config), None).1
}

impl CertStore {
    /// Loads the certificates of `config`; any failure at start is an error.
    pub fn load(config: &Config) -> anyhow::Result<CertStore> {
        let sources = sources(config);
        let (map, errors) = build_map(&sources, None);
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        let map = Arc::new(ArcSwap::from_pointee(map));
        let mut sc = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(map.clone())));
        sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        sc.session_storage = ServerSessionMemoryCache::new(config.tls.session_cache_size);
        sc.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().context("session ticketer")?;
        sc.ignore_client_order = true;
        Ok(CertStore {
            sources: Mutex::new(sources),
            map,
            config: Arc::new(sc),
        })
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Vec<CertSource>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every certificate of `config` from disk, without putting any in service.
    ///
    /// # Errors
    /// Some certificate failed to load; the message names each file.
    pub fn prepare(&self, config: &Config) -> anyhow::Result<PreparedCerts> {
        let sources = sources(config);
        let (map, errors) = build_map(&sources, None);
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(PreparedCerts { sources, map })
    }

    /// Puts prepared certificates in service: the next handshake sees them, open
    /// connections keep theirs. Returns how many certificates are loaded.
    pub fn commit(&self, p: PreparedCerts) -> usize {
        let n = p.map.by_files.len();
        *self.sources() = p.sources;
        self.map.store(Arc::new(p.map));
        n
    }

    /// Re-reads every certificate. Those that fail keep their previous version in service.
    pub fn reload(&self) -> anyhow::Result<String> {
        let previous = self.map.load_full();
        let (map, errors) = build_map(&self.sources(), Some(&previous));
        let n = map.by_files.len();
        self.map.store(Arc::new(map));
        if errors.is_empty() {
            Ok(format!("reloaded {n} certificate(s)"))
        } else {
            let mut msg = String::from(
                "some certificates failed to reload; their previous version stays in service:",
            );
            for e in errors {
                let _ = write!(msg, "\n  {e}");
            }
            Err(anyhow!(msg))
        }
    }
}

/// Certificates loaded by [`CertStore::prepare`], not yet in service.
pub struct PreparedCerts {
    sources: Vec<CertSource>,
    map: CertMap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_reported() {
        let files = TlsFiles {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
        };
        let e = load_certified_key(&files).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/c.pem"), "{e:#}");
    }

    #[test]
    fn lookup_order() {
        let mut m = CertMap::default();
        assert!(m.lookup(Some("a.example")).is_none());
        m.default = None;
        assert!(!m.knows(None));
    }
}
