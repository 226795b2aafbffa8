//! A throw-away certificate authority for the TLS tests, made with the openssl CLI in a temp
//! dir: a CA and leaf certificates (ECDSA or RSA) signed by it.

use std::{path::PathBuf, process::Command};

use crate::{CMD_TIMEOUT, output_timeout};

/// A CA and leaf certificates signed by it.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// Runs the openssl CLI; panics with its stderr when it fails.
pub fn openssl(args: &[&str]) {
    let out = output_timeout(Command::new("openssl").args(args), CMD_TIMEOUT);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("fht-pki-")
            .tempdir()
            .expect("tempdir");
        let p = |f: &str| dir.path().join(f).display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=force-https test CA",
        ]);
        Pki { dir }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    pub fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    /// Issues `NAME.pem` (leaf + CA chain) and `NAME.key` for `sans`. `rsa` picks an RSA PKCS#8
    /// key, otherwise an ECDSA P-256 key in SEC1 form.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str], rsa: bool) -> (String, String) {
        let san: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
        self.issue_ext(name, cn, &san.join(","), "serverAuth", rsa)
    }

    /// Issues an ECDSA leaf for a server or client of another service (etcd): `san` in
    /// openssl's form (`"IP:198.51.100.100,DNS:localhost"`, may be empty) and `usage` the
    /// extended key usage (`serverAuth`, `clientAuth`, or both comma-separated).
    pub fn issue_for(&self, name: &str, cn: &str, san: &str, usage: &str) -> (String, String) {
        self.issue_ext(name, cn, san, usage, false)
    }

    fn issue_ext(
        &self,
        name: &str,
        cn: &str,
        san: &str,
        usage: &str,
        rsa: bool,
    ) -> (String, String) {
        let p = |f: String| self.path(&f).display().to_string();
        let key = p(format!("{name}.key"));
        if rsa {
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ]);
        } else {
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ]);
        }
        let csr = p(format!("{name}.csr"));
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        let ext = p(format!("{name}.ext"));
        let san = if san.is_empty() {
            String::new()
        } else {
            format!("subjectAltName={san}\n")
        };
        std::fs::write(
            &ext,
            format!(
                "{san}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
            ),
        )
        .expect("ext file");
        let leaf = p(format!("{name}.leaf"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.ca(),
            "-CAkey",
            &p("ca.key".into()),
            "-CAcreateserial",
            "-out",
            &leaf,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(&leaf).expect("leaf"),
            std::fs::read_to_string(self.ca()).expect("ca")
        );
        let cert = p(format!("{name}.pem"));
        std::fs::write(&cert, chain).expect("chain");
        (cert, key)
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
