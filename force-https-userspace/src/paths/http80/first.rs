//! The answer to a port-80 connection's first request, as a pure function of the bytes read
//! so far: the policy decision for a complete head, and the exact response bytes when
//! force-https answers itself. No I/O, so unit tests (and `paths::same_answers`) reach it.

use force_https_proto::{
    head::{HeadStatus, parse_head, redirect_inputs},
    host::normalize,
    response,
};

use crate::{
    edge::Settings,
    metrics::Metrics,
    policy::{Decision, PolicyTable, RequestFacts, Scheme, Via, decide},
};

/// What to do with a connection after reading `buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstRequest {
    /// The head is not complete yet: read more.
    Incomplete,
    /// Send these bytes, then close the connection as [`Close`] says.
    Answer(Vec<u8>, Close),
    /// Hand the connection (and `buf`) to the proxy service, which decides every request of
    /// it, the first included.
    Proxy,
}

/// How a connection answered on its first request is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// At once, after the answer: the client sent a complete head without a body and nothing
    /// after it, so nothing it sends later can be a reply to wait for (nginx's heuristic for
    /// `lingering_close on`). A client that still sends (a late pipelined request) gets a
    /// reset after the answer, as from nginx.
    Now,
    /// Half-close after the answer, then read and discard what the client still sends (up to
    /// 1 MiB for 2 s) before closing: a request body in flight, or more than the head
    /// received, would otherwise make the kernel reset the connection, and the reset can
    /// destroy the answer before the client reads it.
    Linger,
}

/// Decides a connection's first request from the bytes read so far, and counts the outcome
/// (decisions with [`Decision::count`], errors by status).
pub fn first_request(
    settings: &Settings,
    table: &PolicyTable,
    m: &Metrics,
    buf: &[u8],
) -> FirstRequest {
    let error = |status: u16| {
        m.count_status(status);
        // A refused head may have more bytes behind it.
        FirstRequest::Answer(response::error_response(status).to_vec(), Close::Linger)
    };
    let head = match parse_head(buf, settings.limits.max_head_bytes) {
        HeadStatus::Partial => return FirstRequest::Incomplete,
        HeadStatus::Error(e) => return error(e.status()),
        HeadStatus::Complete(head) => head,
    };
    // More bytes may still come only when the head announced a body or more than the head
    // arrived (a pipelined request).
    let close = if head.has_body || buf.len() > head.head_len {
        Close::Linger
    } else {
        Close::Now
    };
    let default_host = settings.default_host.as_deref().map(str::as_bytes);
    let t = match redirect_inputs(&head, default_host) {
        Ok(t) => t,
        Err(e) => return error(e.status()),
    };
    let host = normalize(&t.authority);
    let facts = RequestFacts {
        scheme: Scheme::Http,
        host: &host,
        method: head.method.as_bytes(),
        path_and_query: t.path_and_query,
        asterisk: t.is_asterisk,
        misdirected: false,
        looped: false,
    };
    let decision = decide(table, &facts);
    match decision {
        Decision::Redirect { status, .. } => {
            match response::redirect(status, &host, settings.https_port, t.path_and_query) {
                Some(bytes) => {
                    decision.count(Via::Socket, m);
                    FirstRequest::Answer(bytes, close)
                }
                None => error(400),
            }
        }
        Decision::Local { answer, .. } => {
            decision.count(Via::Socket, m);
            FirstRequest::Answer(answer.bytes().to_vec(), close)
        }
        // Counted by the proxy service, which decides it again from the same bytes.
        Decision::Proxy { .. } => FirstRequest::Proxy,
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use super::*;
    use crate::{config::Config, policy::journal::Overrides};

    fn answer(bytes: &[u8]) -> FirstRequest {
        let config = Config::from_toml(
            Path::new("t.toml"),
            "[[site]]\nname = \"shop\"\ndomains = [\"shop.example\"]\nbackend = \"http://127.0.0.1:9\"\nforce_https = true\n",
        )
        .unwrap();
        let sites: Vec<_> = config.sites.iter().cloned().map(Arc::new).collect();
        let table = PolicyTable::build(&sites, &Overrides::new(), &Overrides::new());
        first_request(
            &Settings::from_config(&config),
            &table,
            &Metrics::default(),
            bytes,
        )
    }

    fn close(bytes: &[u8]) -> Close {
        match answer(bytes) {
            FirstRequest::Answer(_, c) => c,
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn lingers_only_when_more_bytes_may_come() {
        let get = b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n";
        assert_eq!(close(get), Close::Now);
        // A body announced, whole or not yet.
        let post = b"POST /a HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(close(post), Close::Linger);
        assert_eq!(close(&[&post[..], b"abc"].concat()), Close::Linger);
        let chunked =
            b"POST /a HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(close(chunked), Close::Linger);
        // A pipelined request behind the first.
        assert_eq!(close(&[&get[..], &get[..]].concat()), Close::Linger);
        // A refused head.
        assert_eq!(close(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Close::Linger);
    }
}
