//! Arbitrary bytes as a received frame: `frame::parse` and `frame::answer_in_place` never
//! panic, and every answer they produce is a well-formed turned-around frame with correct
//! checksums.
//!
//! Input: byte 0 picks the status and how much room the buffer has, bytes 1..=2 the length of
//! the path taken from the end of the input, the rest is the frame.
#![no_main]

use force_https_proto::{
    frame::{self, TH_ACK},
    response::{RedirectPrefix, RedirectStatus},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, p0, p1, rest @ ..] = data else {
        return;
    };
    let path_len = usize::from(u16::from_le_bytes([*p0, *p1])) % (rest.len() + 1);
    let (frame_bytes, path) = rest.split_at(rest.len() - path_len);
    let status = if mode & 1 == 0 {
        RedirectStatus::Moved301
    } else {
        RedirectStatus::Permanent308
    };
    let prefix = RedirectPrefix::new(status, "fuzz.example", 443);
    // Room after the frame: none, a little, or a whole UMEM chunk.
    let room = match (mode >> 1) & 3 {
        0 => 0,
        1 => 64,
        _ => 4096,
    };
    let mut buf = frame_bytes.to_vec();
    buf.resize(frame_bytes.len() + room, 0);
    let Ok(req) = frame::parse(frame_bytes) else {
        return;
    };
    assert!(req.data + req.data_len <= frame_bytes.len());
    let empty = mode & 8 != 0;
    let result = frame::answer_in_place(&mut buf, &req, |out| {
        if empty {
            Some(0)
        } else {
            prefix.write(path, out)
        }
    });
    let Ok(n) = result else {
        return;
    };
    let answer = &buf[..n];
    assert!(frame::checksums_ok(answer), "bad checksums");
    let a = frame::parse(answer).expect("the answer parses");
    assert_eq!((a.sport, a.dport), (req.dport, req.sport));
    assert_eq!(a.seq, req.ack);
    let fin = u32::from(req.fin());
    assert_eq!(
        a.ack,
        req.seq.wrapping_add(req.data_len as u32).wrapping_add(fin)
    );
    assert!(a.flags & TH_ACK != 0);
    assert!(a.data_len <= a.max_payload());
    if !empty {
        let expected = prefix.response_len(path);
        assert_eq!(a.data_len, expected);
    }
});
