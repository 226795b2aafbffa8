// The sites every userspace target runs with (included by the targets, not a target itself):
// enforced with `redirect_code` auto, 301 and 308, not enforced, wildcard, IDN, IPv6 literal,
// with and without a backend, with exempt paths and with the ACME exemption turned off.
pub const SITES: &str = r#"
[[site]]
name = "shop"
domains = ["shop.example.com", "*.shop.example.com"]
backend = "http://127.0.0.1:8080"
force_https = true
exempt_paths = ["/healthz", "/api/"]
[[site]]
name = "blog"
domains = ["blog.example.com", "*.blog.example.com"]
backend = "http://127.0.0.1:8081"
[[site]]
name = "static"
domains = ["x.shop.example.com", "bücher.example"]
redirect_code = 308
force_https = true
[[site]]
name = "legacy"
domains = ["legacy.example.com", "[2001:db8::1]", "192.0.2.1"]
backend = "http://127.0.0.1:8082"
redirect_code = 301
force_https = true
acme_exempt = false
"#;
