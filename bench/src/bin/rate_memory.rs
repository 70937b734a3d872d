//! Bytes of heap per rate-limit key and per cached token, measured with a counting
//! allocator. Run: `cargo run --release -p gatehouse-bench --bin rate_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse_core::policy::RateLimit;
use gatehouse_core::ratelimit::{Gcra, RateKey, RateScope};
use gatehouse_core::{MemoryRateStore, RateStore};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    const KEYS: usize = 1_000_000;
    let g = Gcra::new(&RateLimit { requests: 100, per_secs: 1, burst: None });
    let now = 1_800_000_000u64 * 1_000_000_000;
    let ids: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let store = MemoryRateStore::new(KEYS + KEYS / 8, [5; 16]);
    for id in &ids {
        store.check(&RateKey { scope: RateScope::User, org: "acme", id }, &g, now);
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    let held = store.len();
    println!("rate store: {held} keys, {used} bytes of heap, {:.1} bytes per key", used as f64 / held as f64);

    let before = LIVE.load(Ordering::Relaxed);
    let bounded = MemoryRateStore::new(100_000, [6; 16]);
    for id in &ids {
        bounded.check(&RateKey { scope: RateScope::User, org: "acme", id }, &g, now);
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    println!("bounded store (capacity 100000) after {KEYS} distinct keys: {} keys held, {used} bytes", bounded.len());
}
