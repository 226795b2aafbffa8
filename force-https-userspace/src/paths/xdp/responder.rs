//! The AF_XDP responder's core: turns one received frame into its answer, in place, with
//! no allocation and no I/O ([`Responder::handle`]).
//!
//! A frame in the RX ring cannot go back to the kernel, so the responder re-derives
//! everything the socket path would: it parses the frame ([`force_https_proto::frame`]) and
//! the head (`parse_head`, `redirect_inputs`, `normalize_into`), decides with the live policy
//! table through the one decision ([`crate::policy::decide`]) and writes the redirect with
//! [`force_https_proto::response::RedirectPrefix`] straight into the frame. When the decision
//! is not a redirect (the policy changed since XDP looked, or a head XDP accepted but the
//! parser does not), the outcome is a fallback: the frame is dropped and its flow handed to
//! the kernel, whose socket path answers the client's retransmission with the same bytes. A
//! bare FIN (the client closing after the answer) is answered with an ACK, and a SYN-ACK that
//! XDP built (where its own `XDP_TX` would not reach the peer) is sent as it is.
//!
//! The payload is copied into a scratch buffer owned by the responder, the host is
//! normalized into a stack buffer, and the answer is written into the frame (see the
//! allocation-counting test below).

use force_https_common::{FlowKey, MAX_HEAD};
use force_https_proto::{
    frame::{self, TH_ACK, TH_SYN, TcpFrame},
    head::{HeadStatus, parse_head, redirect_inputs},
    host::{MAX_HOST_LEN, normalize_into},
    response::{RedirectPrefix, RedirectStatus},
};

use crate::policy::{Decision, PolicyTable, RequestFacts, Scheme, decide};

/// What the responder did with one frame.
#[derive(Debug)]
pub enum Outcome<'t> {
    /// The frame now holds a redirect of `len` bytes: transmit it.
    Redirect {
        /// Frame length.
        len: usize,
        /// The decision, to be counted with `Decision::count(Via::Xdp, ..)`.
        decision: Decision<'t>,
    },
    /// The frame now holds the ACK of a bare FIN: transmit it.
    FinAck {
        /// Frame length.
        len: usize,
    },
    /// The frame is a SYN-ACK XDP made (`Settings::synack` = AF_XDP): transmit it unchanged.
    SynAck {
        /// Frame length.
        len: usize,
    },
    /// Not answered here: drop the frame, pass the flow's retransmissions to the kernel.
    Fallback(FlowKey),
    /// Not a frame the responder handles: drop it.
    Drop,
}

/// The per-thread responder core: everything needed to answer a frame, preallocated.
pub struct Responder {
    /// Per status, the prefix of a redirect to the empty host on port 443: the status line and
    /// `Location: https://`. The host and `:port` are inserted after it (see
    /// [`Responder::write_redirect`]).
    prefix_301: RedirectPrefix,
    prefix_308: RedirectPrefix,
    /// `:PORT` when `redirect.https_port` is not 443, else empty.
    port_suffix: Vec<u8>,
    default_host: Option<Vec<u8>>,
    max_head: usize,
    /// The request payload, copied out of the frame before the answer overwrites it.
    scratch: Box<[u8; MAX_HEAD as usize]>,
}

impl Responder {
    /// A responder for `redirect.https_port`, `redirect.default_host` and
    /// `limits.max_head_bytes`.
    pub fn new(https_port: u16, default_host: Option<&str>, max_head: usize) -> Responder {
        // The prefixes of RedirectPrefix::new(status, host, port) are those of the empty host
        // on 443 followed by `host` and `:port`; that is checked by the tests below against
        // `response::redirect` for exact hosts, wildcard matches, IPv6 literals and ports.
        let port_suffix = if https_port == 443 {
            Vec::new()
        } else {
            format!(":{https_port}").into_bytes()
        };
        Responder {
            prefix_301: RedirectPrefix::new(RedirectStatus::Moved301, "", 443),
            prefix_308: RedirectPrefix::new(RedirectStatus::Permanent308, "", 443),
            port_suffix,
            default_host: default_host.map(|h| h.as_bytes().to_vec()),
            max_head,
            scratch: Box::new([0; MAX_HEAD as usize]),
        }
    }

    /// Writes the redirect for `host` (normalized) and `path_and_query` into `out`: exactly
    /// `RedirectPrefix::new(status, host, https_port).write(path_and_query, out)`, without
    /// building a prefix per host. `None` when it does not fit or the path is refused.
    pub fn write_redirect(
        &self,
        status: RedirectStatus,
        host: &[u8],
        path_and_query: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let prefix = match status {
            RedirectStatus::Moved301 => &self.prefix_301,
            RedirectStatus::Permanent308 => &self.prefix_308,
        };
        let p = prefix.as_bytes().len();
        let insert = host.len() + self.port_suffix.len();
        // prefix | path | suffix, then make room for host and port after the prefix.
        let n = prefix.write(path_and_query, out)?;
        let total = n.checked_add(insert)?;
        if total > out.len() {
            return None;
        }
        out.copy_within(p..n, p + insert);
        out.get_mut(p..p + host.len())?.copy_from_slice(host);
        out.get_mut(p + host.len()..p + insert)?
            .copy_from_slice(&self.port_suffix);
        Some(total)
    }

    /// Handles one received frame (`buf[..len]`, `buf` being the whole room of its UMEM
    /// chunk), deciding with `table`. No allocation.
    pub fn handle<'t>(
        &mut self,
        table: &'t PolicyTable,
        buf: &mut [u8],
        len: usize,
    ) -> Outcome<'t> {
        let Some(frame_bytes) = buf.get(..len) else {
            return Outcome::Drop;
        };
        let Ok(req) = frame::parse(frame_bytes) else {
            return Outcome::Drop;
        };
        if req.flags & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK {
            // Only XDP puts frames in the RX ring, and the only SYN it hands over is the
            // SYN-ACK it built (checksums complete).
            return Outcome::SynAck { len };
        }
        let flow = flow_key(frame_bytes, &req);
        if req.data_len == 0 {
            if !req.fin() {
                return Outcome::Drop;
            }
            return match frame::answer_in_place(buf, &req, |_| Some(0)) {
                Ok(len) => Outcome::FinAck { len },
                Err(_) => Outcome::Drop,
            };
        }
        let payload = req.payload(frame_bytes);
        let n = payload.len();
        let Some(dst) = self.scratch.get_mut(..n) else {
            return Outcome::Fallback(flow);
        };
        dst.copy_from_slice(payload);
        let Some(head_bytes) = self.scratch.get(..n) else {
            return Outcome::Fallback(flow);
        };
        let head = match parse_head(head_bytes, self.max_head) {
            HeadStatus::Complete(h) if h.head_len == n && !h.has_body => h,
            _ => return Outcome::Fallback(flow),
        };
        let Ok(t) = redirect_inputs(&head, self.default_host.as_deref()) else {
            return Outcome::Fallback(flow);
        };
        let mut host_buf = [0u8; MAX_HOST_LEN];
        let Ok(hl) = normalize_into(&t.authority, &mut host_buf) else {
            return Outcome::Fallback(flow);
        };
        let Some(Ok(host)) = host_buf.get(..hl).map(std::str::from_utf8) else {
            return Outcome::Fallback(flow);
        };
        let facts = RequestFacts {
            scheme: Scheme::Http,
            host,
            method: head.method.as_bytes(),
            path_and_query: t.path_and_query,
            asterisk: t.is_asterisk,
            misdirected: false,
            looped: false,
        };
        let decision = decide(table, &facts);
        let Decision::Redirect { status, .. } = decision else {
            return Outcome::Fallback(flow);
        };
        let path = t.path_and_query;
        match frame::answer_in_place(buf, &req, |out| {
            self.write_redirect(status, host.as_bytes(), path, out)
        }) {
            Ok(len) => Outcome::Redirect { len, decision },
            Err(_) => Outcome::Fallback(flow),
        }
    }
}

/// The flow key of a request frame, as XDP builds it.
pub(super) fn flow_key(frame: &[u8], req: &TcpFrame) -> FlowKey {
    let mut key = FlowKey {
        family: if req.ipv6 { 6 } else { 4 },
        sport: req.sport.to_be_bytes(),
        dport: req.dport.to_be_bytes(),
        ..FlowKey::default()
    };
    let (s, d, n) = if req.ipv6 {
        (req.l3 + 8, req.l3 + 24, 16)
    } else {
        (req.l3 + 12, req.l3 + 16, 4)
    };
    if let (Some(src), Some(dst)) = (frame.get(s..s + n), frame.get(d..d + n)) {
        key.saddr[..n].copy_from_slice(src);
        key.daddr[..n].copy_from_slice(dst);
    }
    key
}

/// Counters of the responders (all queues).
/// Frames for tests of the responder (here and in `paths::same_answers`).
#[cfg(test)]
pub(crate) mod testing {
    use force_https_proto::frame;

    /// An Ethernet + IP + TCP (timestamps) frame carrying `payload`, in a 4 KiB buffer.
    pub(crate) fn frame(v6: bool, payload: &[u8], flags: u8) -> (Vec<u8>, usize) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        let tcp_len = 32 + payload.len();
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 2, 198, 51, 100, 1]);
        }
        f.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 10, 0, 0, 0, 20, 0x80, flags]);
        f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(payload);
        let len = f.len();
        f.resize(4096, 0);
        (f, len)
    }

    pub(crate) fn payload_of(buf: &[u8], len: usize) -> Vec<u8> {
        let f = frame::parse(&buf[..len]).unwrap();
        f.payload(&buf[..len]).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{frame, payload_of};
    use super::*;
    use crate::config::Config;
    use force_https_proto::response::redirect;
    use std::path::Path;
    use std::sync::Arc;

    #[global_allocator]
    static GLOBAL: crate::allocs::Counting = crate::allocs::Counting;

    fn status_of(d: &Decision<'_>) -> Option<RedirectStatus> {
        match d {
            Decision::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn table(dir: &Path) -> PolicyTable {
        let text = format!(
            r#"
[state]
dir = "{}"
[[site]]
name = "shop"
domains = ["shop.example.com", "*.shop.example.com", "[2001:db8::1]"]
force_https = true
[[site]]
name = "static"
domains = ["x.shop.example.com"]
redirect_code = 308
force_https = true
[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "http://127.0.0.1:1"
"#,
            dir.display()
        );
        let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let sites: Vec<_> = cfg.sites.iter().cloned().map(Arc::new).collect();
        PolicyTable::build(&sites, &Default::default(), &Default::default())
    }

    #[test]
    fn redirect_bytes_match_the_builder() {
        let r = Responder::new(443, None, 16384);
        let r8 = Responder::new(8443, None, 16384);
        for host in [
            "shop.example.com",
            "a.shop.example.com",
            "[2001:db8::1]",
            "h",
        ] {
            for path in [&b"/"[..], b"/a%20b?x=1&y", b"?q", b""] {
                for status in [RedirectStatus::Moved301, RedirectStatus::Permanent308] {
                    for (resp, port) in [(&r, 443), (&r8, 8443)] {
                        let mut out = [0u8; 600];
                        let n = resp
                            .write_redirect(status, host.as_bytes(), path, &mut out)
                            .unwrap();
                        assert_eq!(&out[..n], &redirect(status, host, port, path).unwrap()[..]);
                        let exact = RedirectPrefix::new(status, host, port).response_len(path);
                        assert_eq!(n, exact);
                        // One byte short is refused.
                        let mut short = vec![0u8; exact - 1];
                        assert_eq!(
                            resp.write_redirect(status, host.as_bytes(), path, &mut short),
                            None
                        );
                    }
                }
            }
        }
        let mut out = [0u8; 600];
        assert_eq!(
            r.write_redirect(RedirectStatus::Moved301, b"h", b"/a b", &mut out),
            None
        );
    }

    #[test]
    fn answers_like_the_socket_path() {
        let d = tempfile::tempdir().unwrap();
        let t = table(d.path());
        let mut r = Responder::new(443, None, 16384);
        use RedirectStatus::{Moved301, Permanent308};
        type Want = Option<(RedirectStatus, &'static str, &'static [u8])>;
        let cases: &[(&[u8], Want)] = &[
            (
                b"GET /a?b HTTP/1.1\r\nHost: Shop.Example.com.\r\n\r\n",
                Some((Moved301, "shop.example.com", b"/a?b")),
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: a.shop.example.com:80\r\n\r\n",
                Some((Moved301, "a.shop.example.com", b"/")),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 0\r\n\r\n",
                Some((Permanent308, "shop.example.com", b"/p")),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x.shop.example.com\r\n\r\n",
                Some((Permanent308, "x.shop.example.com", b"/")),
            ),
            (
                b"GET / HTTP/1.0\r\nHost: [2001:DB8::1]\r\n\r\n",
                Some((Moved301, "[2001:db8::1]", b"/")),
            ),
            (b"GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n", None),
            (
                b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
                None,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: shop.example.com\r\n\r\n",
                None,
            ),
            (b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET", None),
        ];
        for v6 in [false, true] {
            for (req, want) in cases {
                let (mut buf, len) = frame(v6, req, 0x18);
                match (r.handle(&t, &mut buf, len), want) {
                    (Outcome::Redirect { len, decision }, Some((s, host, path))) => {
                        assert_eq!(status_of(&decision), Some(*s));
                        assert!(frame::checksums_ok(&buf[..len]));
                        let p = payload_of(&buf, len);
                        assert_eq!(p, redirect(*s, host, 443, path).unwrap());
                    }
                    (Outcome::Fallback(k), None) => {
                        assert_eq!(k.family, if v6 { 6 } else { 4 });
                        assert_eq!(k.sport, 40000u16.to_be_bytes());
                        assert_eq!(k.dport, 80u16.to_be_bytes());
                    }
                    (o, w) => panic!(
                        "{:?}: got {o:?}, wanted {w:?}",
                        String::from_utf8_lossy(req)
                    ),
                }
            }
        }
        // A bare FIN gets an ACK, a bare ACK is dropped.
        let (mut buf, len) = frame(false, b"", 0x11);
        assert!(matches!(
            r.handle(&t, &mut buf, len),
            Outcome::FinAck { .. }
        ));
        let (mut buf, len) = frame(false, b"", 0x10);
        assert!(matches!(r.handle(&t, &mut buf, len), Outcome::Drop));
        // A SYN-ACK (built by XDP) is sent back untouched.
        for v6 in [false, true] {
            let (mut buf, len) = frame(v6, b"", 0x12);
            let before = buf.clone();
            assert!(matches!(
                r.handle(&t, &mut buf, len),
                Outcome::SynAck { len: l } if l == len
            ));
            assert_eq!(buf, before);
        }
        // Garbage is dropped.
        let mut junk = vec![0u8; 100];
        assert!(matches!(r.handle(&t, &mut junk, 100), Outcome::Drop));
    }

    #[test]
    fn no_allocation_per_frame() {
        let d = tempfile::tempdir().unwrap();
        let t = table(d.path());
        let mut r = Responder::new(8443, None, 16384);
        let reqs: [&[u8]; 4] = [
            b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: Z9.Shop.Example.COM.\r\nContent-Length: 0\r\n\r\n",
            b"HEAD /%7Euser HTTP/1.0\r\nHost: [2001:db8::1]:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n",
        ];
        let mut frames: Vec<(Vec<u8>, usize)> = Vec::new();
        for i in 0..256 {
            frames.push(frame(i % 2 == 0, reqs[i % reqs.len()], 0x18));
        }
        frames.push(frame(false, b"", 0x11));
        frames.push(frame(true, b"", 0x12));
        let mut work: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f.clone()).collect();
        // Warm up once (thread-locals of the allocator-free paths).
        let _ = r.handle(&t, &mut work[0].clone(), frames[0].1);
        // This thread's count: other tests count their own threads in parallel.
        use crate::allocs::{count_this_thread, this_thread_allocations as allocations};
        let start = allocations();
        count_this_thread(true);
        let mut answered = 0;
        for _round in 0..4 {
            for (i, (orig, len)) in frames.iter().enumerate() {
                let buf = &mut work[i];
                buf.copy_from_slice(orig);
                match r.handle(&t, buf, *len) {
                    Outcome::Redirect { .. } | Outcome::FinAck { .. } | Outcome::SynAck { .. } => {
                        answered += 1
                    }
                    Outcome::Fallback(_) | Outcome::Drop => {}
                }
            }
        }
        count_this_thread(false);
        assert_eq!(allocations() - start, 0, "allocations during the burst");
        // The counter does count.
        count_this_thread(true);
        let v = std::hint::black_box(vec![0u8; 64]);
        count_this_thread(false);
        drop(v);
        assert_eq!(allocations() - start, 1);
        assert_eq!(answered, 4 * (192 + 2));
    }
}
