//! One page of the rewrite bench corpus through the rewriter, or through lol_html alone, a
//! given number of times: for instruction counts, which a machine busy with other work does
//! not disturb the way it does wall-clock throughput.
//!
//! ```text
//! cargo build --release -p force-https-proto --example rewrite_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/rewrite_cost PAGE WHAT N
//! ```
//!
//! `PAGE` is the start of a corpus file name (`core-slice`), `WHAT` one of `rewriter`,
//! `lol_html-no-handler`, `lol_html-any-element`, `lol_html-our-selectors` (as in the
//! bench) or `lol_html-selector=SEL` (any selector list SEL), `N` the number of rewrites. It
//! prints the mixed page's size; instructions per byte are (Ir with N − Ir with 1) /
//! ((N − 1) × size), which leaves out reading and preparing the page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::{PAGES, lol_html_only, mixed, page, rewrite};
use force_https_proto::rewrite::html::SELECTOR;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [prefix, what, n] = &args[..] else {
        panic!("usage: rewrite_cost PAGE WHAT N (see the source's doc comment)");
    };
    let name = PAGES
        .iter()
        .find(|p| p.starts_with(prefix.as_str()))
        .expect("no corpus page starts with PAGE");
    let (html, _) = mixed(&page(name));
    let n: usize = n.parse().expect("N is a number");
    let star: lol_html::Selector = "*".parse().unwrap();
    let ours: lol_html::Selector = SELECTOR.parse().unwrap();
    for _ in 0..n {
        black_box(match what.as_str() {
            "rewriter" => rewrite(&html).0,
            "lol_html-no-handler" => lol_html_only(&html, None),
            "lol_html-any-element" => lol_html_only(&html, Some(&star)),
            "lol_html-our-selectors" => lol_html_only(&html, Some(&ours)),
            w if w.starts_with("lol_html-selector=") => {
                let sel: lol_html::Selector = w["lol_html-selector=".len()..]
                    .parse()
                    .expect("SEL is not a selector list lol_html accepts");
                lol_html_only(&html, Some(&sel))
            }
            _ => panic!(
                "WHAT is rewriter, lol_html-{{no-handler,any-element,our-selectors}} or \
                 lol_html-selector=SEL"
            ),
        });
    }
    println!("{name}: {} bytes", html.len());
}
