//! Pure protocol logic shared by every force-https path: no I/O, no global state, no
//! allocation on the per-request functions. Unit tests and fuzzers reach everything here.
//!
//! - [`host`]: host names from the wire and from the config, normalized and validated.
//! - [`head`]: the HTTP/1.x request head parser and what force-https needs from it.
//! - [`response`]: the one builder of response bytes (redirects and errors).
//! - [`frame`]: in-place rewriting of a request frame into its answer (AF_XDP fast path).
//! - [`rewrite`]: Automatic HTTPS Rewrites of HTML bodies (streaming, bounded memory; this
//!   one allocates per document).

pub mod frame;
pub mod head;
pub mod host;
pub mod response;
pub mod rewrite;
#[cfg(test)]
mod test_alloc;
