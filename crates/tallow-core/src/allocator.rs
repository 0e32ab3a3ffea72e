//! The allocator for tallow's own allocations (the Node addon and the examples declare it their
//! `#[global_allocator]`): the system allocator, plus a small cache of freed large blocks.
//!
//! Why: a forward pass on the CPU allocates a new tensor per operation, many of them megabytes
//! (a 512-token prompt's [512, 8192] activations are 16 MiB, its attention scores 32 MiB). The
//! system allocator hands blocks that large back to the kernel when they are freed (munmap, or
//! trimming a thread's heap), so every operation writes to fresh memory that the kernel maps and
//! zeroes page by page on first touch: a third of a 512-token prompt's time on Llama-3.2-1B
//! (122 → 180 tokens/s without the faults). The same sizes recur in every layer, so keeping a few
//! freed blocks and handing one back for a request of exactly its size removes nearly all of
//! them. The cache is bounded ([`SLOTS`] blocks, [`MAX_CACHED_BYTES`] in all, the oldest evicted
//! first), so what it holds beyond the working set stays small.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Gives the system allocator's free heap pages back to the kernel. glibc keeps the pages of
/// freed small blocks (only the top of its heap shrinks by itself), so a load's transient tables,
/// such as a GGUF file's vocabulary strings and the tokenizer's intermediate maps (tens of MB for
/// a 150k-token vocabulary), would still be resident when the weights arrive, and count at the
/// peak.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it takes the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Smallest block the cache keeps: below it the system allocator reuses its heap anyway.
const MIN_BYTES: usize = 1 << 20;
/// Most blocks kept at once.
const SLOTS: usize = 16;
/// Most bytes kept at once: enough for the blocks a layer frees and asks for again, little
/// enough to leave peak memory where it was (larger caps hold blocks idle at the peak).
const MAX_CACHED_BYTES: usize = 32 << 20;

/// The system allocator with a cache of freed blocks of at least [`MIN_BYTES`].
pub struct ReusingAllocator {
    locked: AtomicBool,
    cache: UnsafeCell<Cache>,
}

// SAFETY: `cache` is only touched while `locked` is held (see `with_cache`).
unsafe impl Sync for ReusingAllocator {}

struct Cache {
    /// Free blocks; `size == 0` marks an empty slot.
    blocks: [Block; SLOTS],
    /// Σ size over the blocks.
    bytes: usize,
    /// The slot evicted next when the cache is full (oldest first, round robin).
    next_eviction: usize,
}

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
}

const EMPTY: Block = Block {
    ptr: std::ptr::null_mut(),
    size: 0,
    align: 0,
};

impl ReusingAllocator {
    pub const fn new() -> Self {
        ReusingAllocator {
            locked: AtomicBool::new(false),
            cache: UnsafeCell::new(Cache {
                blocks: [EMPTY; SLOTS],
                bytes: 0,
                next_eviction: 0,
            }),
        }
    }

    /// Runs `f` on the cache under a spin lock (an allocator cannot use a lock that allocates or
    /// parks; holders only scan 16 slots).
    fn with_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so no other reference to the cache exists.
        let result = f(unsafe { &mut *self.cache.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    /// A cached block of exactly `layout`, taken out of the cache.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        self.with_cache(|cache| {
            let slot = cache
                .blocks
                .iter()
                .position(|b| b.size == layout.size() && b.align == layout.align())?;
            let block = std::mem::replace(&mut cache.blocks[slot], EMPTY);
            cache.bytes -= block.size;
            Some(block.ptr)
        })
    }

    /// Keeps the freed block `ptr` of `layout`; returns the blocks evicted to make room, to be
    /// freed outside the lock (or `ptr` itself when it is too large to keep), empty slots `EMPTY`.
    fn keep(&self, ptr: *mut u8, layout: Layout) -> [Block; SLOTS] {
        let block = Block {
            ptr,
            size: layout.size(),
            align: layout.align(),
        };
        let mut evicted = [EMPTY; SLOTS];
        if block.size > MAX_CACHED_BYTES {
            evicted[0] = block;
            return evicted;
        }
        let mut count = 0;
        self.with_cache(|cache| {
            while cache.bytes + block.size > MAX_CACHED_BYTES
                || cache.blocks.iter().all(|b| b.size != 0)
            {
                let slot = cache.next_eviction;
                cache.next_eviction = (slot + 1) % SLOTS;
                let old = std::mem::replace(&mut cache.blocks[slot], EMPTY);
                if old.size != 0 {
                    cache.bytes -= old.size;
                    evicted[count] = old;
                    count += 1;
                }
            }
            let slot = cache.blocks.iter().position(|b| b.size == 0);
            let slot = slot.unwrap_or_else(|| unreachable!("a slot was freed above"));
            cache.blocks[slot] = block;
            cache.bytes += block.size;
        });
        evicted
    }
}

impl Default for ReusingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either fresh from `System` or a cached block of exactly the
// requested size and alignment that nothing else references (it was freed and is handed out
// once); blocks go back to `System` with the layout they were allocated with.
unsafe impl GlobalAlloc for ReusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BYTES {
            if let Some(ptr) = self.take(layout) {
                return ptr;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BYTES {
            if let Some(ptr) = self.take(layout) {
                std::ptr::write_bytes(ptr, 0, layout.size());
                return ptr;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < MIN_BYTES {
            return System.dealloc(ptr, layout);
        }
        for block in self.keep(ptr, layout).iter().filter(|b| b.size != 0) {
            System.dealloc(
                block.ptr,
                Layout::from_size_align_unchecked(block.size, block.align),
            );
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < MIN_BYTES && new_size < MIN_BYTES {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 4 << 20;

    #[test]
    fn a_freed_large_block_is_handed_back_for_the_same_layout_only() {
        let cache = ReusingAllocator::new();
        let layout = Layout::from_size_align(BIG, 64).unwrap();
        // SAFETY: every block is freed once, with the layout it was allocated with.
        unsafe {
            let first = cache.alloc(layout);
            first.write_bytes(7, BIG);
            cache.dealloc(first, layout);
            // Another size or alignment gets a different block.
            let other = Layout::from_size_align(BIG + 64, 64).unwrap();
            let wider = Layout::from_size_align(BIG, 128).unwrap();
            let (a, b) = (cache.alloc(other), cache.alloc(wider));
            assert!(a != first && b != first);
            cache.dealloc(a, other);
            cache.dealloc(b, wider);
            // The same layout gets it back, zeroed when asked for zeroes.
            let again = cache.alloc_zeroed(layout);
            assert_eq!(again, first);
            assert!(std::slice::from_raw_parts(again, BIG)
                .iter()
                .all(|&x| x == 0));
            cache.dealloc(again, layout);
        }
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let cache = ReusingAllocator::new();
        let layout = Layout::from_size_align(BIG, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let blocks: Vec<*mut u8> = (0..3 * SLOTS).map(|_| cache.alloc(layout)).collect();
            for &block in &blocks {
                cache.dealloc(block, layout);
            }
            let kept = SLOTS.min(MAX_CACHED_BYTES / BIG);
            cache.with_cache(|c| {
                assert_eq!(c.blocks.iter().filter(|b| b.size != 0).count(), kept);
                assert_eq!(c.bytes, kept * BIG);
            });
            // A block larger than the whole cache is never kept.
            let huge = Layout::from_size_align(MAX_CACHED_BYTES + 1, 8).unwrap();
            cache.dealloc(cache.alloc(huge), huge);
            cache.with_cache(|c| assert!(c.bytes <= MAX_CACHED_BYTES));
            // Small blocks go straight to the system allocator.
            let small = Layout::from_size_align(64, 8).unwrap();
            cache.dealloc(cache.alloc(small), small);
            cache.with_cache(|c| assert!(c.blocks.iter().all(|b| b.size != 64)));
            // Growing a large block keeps its contents.
            let grown = cache.realloc(cache.alloc_zeroed(layout), layout, 2 * BIG);
            assert!(std::slice::from_raw_parts(grown, BIG)
                .iter()
                .all(|&x| x == 0));
            cache.dealloc(grown, Layout::from_size_align(2 * BIG, 8).unwrap());
        }
    }
}
