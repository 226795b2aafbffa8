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
    /// Send these bytes, then close the connection.
    Answer(Vec<u8>),
    /// Hand the connection (and `buf`) to the proxy service, which decides every request of
    /// it, the first included.
    Proxy,
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
        FirstRequest::Answer(response::error_response(status).to_vec())
    };
    let head = match parse_head(buf, settings.limits.max_head_bytes) {
        HeadStatus::Partial => return FirstRequest::Incomplete,
        HeadStatus::Error(e) => return error(e.status()),
        HeadStatus::Complete(head) => head,
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
                    FirstRequest::Answer(bytes)
                }
                None => error(400),
            }
        }
        Decision::Local { answer, .. } => {
            decision.count(Via::Socket, m);
            FirstRequest::Answer(answer.bytes().to_vec())
        }
        // Counted by the proxy service, which decides it again from the same bytes.
        Decision::Proxy { .. } => FirstRequest::Proxy,
    }
}
