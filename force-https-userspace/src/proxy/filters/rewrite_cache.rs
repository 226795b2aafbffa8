//! The cache of rewritten documents (Automatic HTTPS Rewrites): a page served again and
//! again is rewritten once. Documents up to [`MAX_DOCUMENT_BYTES`] (decoded) are keyed by an
//! XXH3-128 hash of their site, charset and bytes; a hit is confirmed by comparing the stored
//! input with the new one byte for byte, so a hash collision can never serve another
//! document. Entries belong to one policy table: when the table changes (a host enforced or
//! released, a reload), the cache empties, since the same page may now rewrite differently.
//! Memory is bounded by [`BUDGET_BYTES`] (inputs and outputs), the oldest entries going
//! first.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use bytes::Bytes;

use crate::policy::PolicyTable;

/// The largest document (decoded bytes) that is rewritten whole and cached; a larger one
/// streams through the rewriter.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;

/// The most bytes the cache holds, inputs and outputs together.
pub const BUDGET_BYTES: usize = 32 * 1024 * 1024;

/// A rewritten document.
pub struct Cached {
    /// The document as the backend sent it (decoded).
    pub input: Bytes,
    /// The document rewritten.
    pub output: Bytes,
    /// URLs upgraded in it.
    pub links: u64,
}

/// The key of a document: what the rewrite depends on besides the table.
pub fn key(site: &str, charset: &str, meta_charset: bool, document: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(site.as_bytes());
    h.update(&[0]);
    h.update(charset.as_bytes());
    h.update(&[0, u8::from(meta_charset)]);
    h.update(document);
    h.digest128()
}

#[derive(Default)]
struct State {
    /// The table every entry was made with.
    table: Option<Arc<PolicyTable>>,
    entries: HashMap<u128, Arc<Cached>>,
    /// Insertion order, for eviction.
    order: VecDeque<u128>,
    bytes: usize,
}

/// The cache; shared by every response of the proxy.
#[derive(Default)]
pub struct RewriteCache {
    state: Mutex<State>,
}

impl State {
    /// Empties the cache when `table` is not the one its entries were made with.
    fn adopt(&mut self, table: &Arc<PolicyTable>) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            self.entries.clear();
            self.order.clear();
            self.bytes = 0;
            // Holding the table keeps its address from being reused by a later one.
            self.table = Some(table.clone());
        }
    }
}

impl RewriteCache {
    /// The rewritten form of `document` under `table`, if cached.
    pub fn get(&self, table: &Arc<PolicyTable>, key: u128, document: &[u8]) -> Option<Arc<Cached>> {
        let mut s = self.state.lock().ok()?;
        s.adopt(table);
        let hit = s.entries.get(&key)?;
        (hit.input[..] == *document).then(|| hit.clone())
    }

    /// Stores a rewritten document made under `table`.
    pub fn put(&self, table: &Arc<PolicyTable>, key: u128, entry: Cached) {
        let size = entry.input.len() + entry.output.len();
        if size > BUDGET_BYTES / 16 {
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.adopt(table);
        while s.bytes + size > BUDGET_BYTES {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(e) = s.entries.remove(&old) {
                s.bytes -= e.input.len() + e.output.len();
            }
        }
        if let Some(prev) = s.entries.insert(key, Arc::new(entry)) {
            s.bytes -= prev.input.len() + prev.output.len();
        } else {
            s.order.push_back(key);
        }
        s.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(input: &[u8], out: &[u8]) -> Cached {
        Cached {
            input: Bytes::copy_from_slice(input),
            output: Bytes::copy_from_slice(out),
            links: 1,
        }
    }

    #[test]
    fn hits_need_the_same_table_and_the_same_bytes() {
        let c = RewriteCache::default();
        let t1 = Arc::new(PolicyTable::default());
        let k = key("shop", "utf-8", true, b"<a href=http://x/>");
        c.put(
            &t1,
            k,
            entry(b"<a href=http://x/>", b"<a href=\"https://x/\">"),
        );
        assert!(c.get(&t1, k, b"<a href=http://x/>").is_some());
        // The same key with other bytes (a collision) is no hit.
        assert!(c.get(&t1, k, b"<a href=http://y/>").is_none());
        // The keys differ by site and charset.
        assert_ne!(k, key("blog", "utf-8", true, b"<a href=http://x/>"));
        assert_ne!(k, key("shop", "windows-1252", true, b"<a href=http://x/>"));
        // Another table empties the cache.
        let t2 = Arc::new(PolicyTable::default());
        assert!(c.get(&t2, k, b"<a href=http://x/>").is_none());
        assert!(c.get(&t1, k, b"<a href=http://x/>").is_none());
    }

    #[test]
    fn the_budget_evicts_the_oldest() {
        let c = RewriteCache::default();
        let t = Arc::new(PolicyTable::default());
        let doc = vec![b'x'; BUDGET_BYTES / 40];
        for i in 0..40u8 {
            let mut d = doc.clone();
            d[0] = i;
            c.put(&t, key("s", "utf-8", true, &d), entry(&d, &d));
        }
        let s = c.state.lock().unwrap();
        assert!(s.bytes <= BUDGET_BYTES);
        assert!(s.entries.len() < 40 && s.entries.len() >= 19);
        let mut first = doc.clone();
        first[0] = 0;
        assert!(!s.entries.contains_key(&key("s", "utf-8", true, &first)));
    }
}
