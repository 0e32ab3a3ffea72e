//! Budgets for rendering an untrusted template: a template is a program (it comes from the model
//! files), so a hostile or broken one must fail fast with an error instead of spinning forever or
//! eating the machine's memory.

use crate::error::{Error, ErrorCode, Result};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// The budgets of one render (and of parsing, for `max_duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja fuel: about one unit per instruction executed and per 64 bytes of data a
    /// template creates (strings, lists, output). Bounds both time and memory of a render.
    pub fuel: u64,
    /// The most bytes the rendered prompt may have; checked as the output is written.
    pub max_output_bytes: usize,
    /// minijinja's recursion depth (nested blocks, loops and macro calls; a macro call costs
    /// several levels). At most 500, minijinja's safe maximum.
    pub max_recursion: usize,
    /// Wall-clock backstop for what fuel does not bound well (minijinja charges one comparison
    /// of two deeply nested values like a flat one; some expressions parse in quadratic time).
    /// A template that runs past it is disabled: its render thread cannot be stopped and keeps
    /// running until its fuel is spent. Real templates render in about a millisecond.
    pub max_duration: Duration,
}

impl Limits {
    /// A 1 MiB prompt, and fuel for it: real templates spend about one fuel per 6-7 bytes of
    /// prompt they write (Llama 3, Qwen 3 with tools and Gemma 3 on 200-message conversations),
    /// so half a fuel per byte leaves them a 3x margin. A runaway template stops within about half a
    /// second (the slowest work per fuel seen, list concatenation in a loop, runs ~1 µs per
    /// fuel; plain loops ~70 ns), having allocated at most ~fuel * 64 bytes (32 MiB).
    pub const DEFAULT: Limits = Limits {
        fuel: 500_000,
        max_output_bytes: 1 << 20,
        max_recursion: 500,
        max_duration: Duration::from_millis(750),
    };

    /// Limits for prompts of up to `max_output_bytes` (e.g. from the model's context length),
    /// with fuel scaled to match (never below [`Limits::DEFAULT`]'s).
    pub fn for_output_bytes(max_output_bytes: usize) -> Limits {
        Limits {
            fuel: (max_output_bytes as u64 / 2).max(Limits::DEFAULT.fuel),
            max_output_bytes,
            ..Limits::DEFAULT
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

impl Limits {
    /// The stack a render gets. minijinja (and Rust's own `Drop`) recurse once per nesting level of
    /// a value, and a template can nest lists as deep as its fuel lets it (`{% set ns.x = [ns.x] %}`
    /// in a loop: ~7 fuel a level); printing such a value takes a few hundred bytes of stack per
    /// level. The stack is only reserved address space until it is used.
    pub(super) fn render_stack_bytes(&self) -> usize {
        let per_fuel = 128;
        (self.fuel.saturating_mul(per_fuel) as usize).clamp(64 << 20, 1 << 30)
    }
}

/// Runs `work` on a thread of its own with a `stack_bytes` stack and waits up to `deadline` for
/// it. Parsing and rendering an untrusted template recurse as deep as the template makes them,
/// which would overflow (and abort the process) on an ordinary thread; and some work is not
/// charged to fuel in proportion to its cost (comparing deeply nested values), so time is
/// bounded separately. `None`: the deadline passed; the thread is left to finish on its own (it
/// still stops when its fuel runs out). A panic inside is an `INTERNAL` error.
pub(super) fn run_bounded<T: Send + 'static>(
    stack_bytes: usize,
    deadline: Duration,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Option<Result<T>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("tallow-chat-template".into())
        .stack_size(stack_bytes)
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::new(
                    ErrorCode::Internal,
                    format!("the chat template renderer panicked: {what}"),
                ))
            });
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Some(Err(Error::new(
            ErrorCode::Internal,
            format!("could not start the chat template thread: {e}"),
        )));
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => Some(result),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Error::new(
            ErrorCode::Internal,
            "the chat template thread ended without a result",
        ))),
    }
}

/// An output buffer that refuses to grow past `cap` bytes.
pub(super) struct CappedWriter {
    pub(super) buf: Vec<u8>,
    cap: usize,
    pub(super) exceeded: bool,
}

impl CappedWriter {
    pub(super) fn new(cap: usize) -> Self {
        CappedWriter {
            buf: Vec::new(),
            cap,
            exceeded: false,
        }
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.exceeded = true;
            return Err(io::Error::other("chat template output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
