//! The engine: one thread per model that owns the weights and runs every forward pass, so the
//! caller's thread (Node's JS thread) never waits on compute. Requests arrive over a channel;
//! events go back through each request's sink. The scheduler advances every active sequence by
//! one forward pass per round, so concurrent generations interleave and a cancellation takes
//! effect before the sequence's next token.

use crate::chat::Chat;
use crate::chat_template::ChatRequest;
use crate::decoder::Logits;
use crate::device::DeviceKind;
use crate::error::{Error, ErrorCode, Result};
use crate::generation::GenerateRequest;
use crate::gguf::tensor_type::TensorType;
use crate::guard::catch_panic;
use crate::kv_cache::{CachedPrefix, SequenceCache};
use crate::model::{Model, ModelInfo};
use crate::sampling::ConstraintCompiler;
use crate::sequence::{check_prompt, EventSink, Room, Sequence};
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: DeviceKind,
    /// Compute threads; `None` uses every available core.
    pub threads: Option<usize>,
    /// Quantize a safetensors checkpoint's matrices to this type at load.
    pub quantize: Option<TensorType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: DeviceKind::Cpu,
            threads: None,
            quantize: None,
        }
    }
}

type EvalReply = Box<dyn FnOnce(Result<Vec<f32>>) + Send>;

enum Command {
    Generate(Box<Sequence>),
    Evaluate {
        tokens: Vec<u32>,
        logits: Logits,
        reply: EvalReply,
    },
    DropSession(u64),
    Shutdown,
}

/// Stops one generation before its next token.
#[derive(Clone)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A handle to a model running on its own engine thread. Dropping it shuts the thread down.
pub struct Engine {
    commands: Sender<Command>,
    info: ModelInfo,
    tokenizer: Arc<Tokenizer>,
    chat: Arc<Chat>,
    threads: usize,
    shut_down: AtomicBool,
}

impl Engine {
    /// Starts an engine thread that loads the model at `path`, then calls `on_ready` from that
    /// thread with the engine or the load error. Returns at once.
    pub fn start(
        path: PathBuf,
        options: LoadOptions,
        on_ready: impl FnOnce(Result<Engine>) + Send + 'static,
    ) {
        let spawned = std::thread::Builder::new()
            .name("tallow-engine".into())
            .spawn(move || {
                let (commands, inbox) = channel();
                let loaded = catch_panic(|| {
                    let threads = resolve_threads(options.threads)?;
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("tallow-compute-{i}"))
                        .build()
                        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
                    let model =
                        pool.install(|| Model::load(&path, options.device, options.quantize))?;
                    Ok((pool, model, threads))
                });
                match loaded {
                    Err(e) => on_ready(Err(e)),
                    Ok((pool, model, threads)) => {
                        let engine = Engine {
                            commands,
                            info: model.info.clone(),
                            tokenizer: model.tokenizer.clone(),
                            chat: model.chat.clone(),
                            threads,
                            shut_down: AtomicBool::new(false),
                        };
                        on_ready(Ok(engine));
                        pool.install(|| run(model, inbox));
                    }
                }
            });
        if let Err(e) = spawned {
            // The closure (and on_ready) was dropped with the failed spawn; nothing to report to.
            eprintln!("tallow: cannot spawn the engine thread: {e}");
        }
    }

    /// Loads a model and waits for it (for Rust callers that may block).
    pub fn load(path: impl Into<PathBuf>, options: LoadOptions) -> Result<Engine> {
        let (tx, rx) = channel();
        Engine::start(path.into(), options, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorCode::Internal,
                "the engine thread could not start",
            ))
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's tokenizer; `MODEL_DISPOSED` once the engine is shut down.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(disposed());
        }
        Ok(&self.tokenizer)
    }

    /// Renders a conversation into prompt text with the model's chat template (or `template`:
    /// a template source or a built-in's name); runs on the caller's thread, under the
    /// template limits.
    pub fn render_chat(&self, request: &ChatRequest, template: Option<&str>) -> Result<String> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(disposed());
        }
        self.chat.render(request, template)
    }

    /// Where the chat template comes from: `model`, `builtin:<name>`, or `None`.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat.template_source.as_deref()
    }

    /// Compute threads the engine uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues a generation. `sink` receives its events on the engine thread.
    pub fn generate(&self, request: GenerateRequest, sink: EventSink) -> Result<CancelHandle> {
        request.validate()?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let sequence = Sequence::new(request, sink, cancelled.clone());
        self.send(Command::Generate(Box::new(sequence)))?;
        Ok(CancelHandle(cancelled))
    }

    /// Queues a forward pass over `tokens` from an empty cache; `reply` gets the f32 logits,
    /// row-major [1 or tokens.len(), vocab].
    pub fn evaluate(&self, tokens: Vec<u32>, logits: Logits, reply: EvalReply) -> Result<()> {
        self.send(Command::Evaluate {
            tokens,
            logits,
            reply,
        })
    }

    /// Frees the KV cache kept for `session` (see `GenerateRequest::session`).
    pub fn drop_session(&self, session: u64) -> Result<()> {
        self.send(Command::DropSession(session))
    }

    /// Stops the engine thread; generations in flight end with `FinishReason::Abort` and the
    /// model's memory is released once the thread finishes its current step. Idempotent.
    pub fn shutdown(&self) {
        if !self.shut_down.swap(true, Ordering::SeqCst) {
            let _ = self.commands.send(Command::Shutdown);
        }
    }

    fn send(&self, command: Command) -> Result<()> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(disposed());
        }
        self.commands.send(command).map_err(|_| disposed())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn disposed() -> Error {
    Error::new(ErrorCode::ModelDisposed, "the model has been disposed")
}

fn resolve_threads(requested: Option<usize>) -> Result<usize> {
    match requested {
        Some(0) => Err(Error::new(
            ErrorCode::InvalidOptions,
            "threads must be at least 1",
        )),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// The scheduler loop: take new commands (blocking only when idle), then advance every active
/// sequence by one step. Sessions' caches wait in `sessions` between their generations.
fn run(model: Model, inbox: Receiver<Command>) {
    // Built on first use: the vocabulary's token bytes and llguidance's parser factory.
    let compiler = ConstraintCompiler::new(
        std::path::Path::new(&model.info.path),
        model.tokenizer.clone(),
        model.info.vocab_size,
        model.info.eos_token_ids.clone(),
    );
    let mut active: Vec<Box<Sequence>> = vec![];
    let mut sessions: HashMap<u64, CachedPrefix> = HashMap::new();
    loop {
        let mut next = if active.is_empty() {
            inbox.recv().ok()
        } else {
            match inbox.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Command::Shutdown),
            }
        };
        if active.is_empty() && next.is_none() {
            return; // every handle is gone
        }
        while let Some(command) = next.take() {
            match command {
                Command::Generate(mut sequence) => {
                    if let Some(prefix) = sequence.session().and_then(|id| sessions.remove(&id)) {
                        sequence.resume_from(prefix);
                    }
                    active.push(sequence)
                }
                Command::DropSession(id) => {
                    sessions.remove(&id);
                }
                Command::Evaluate {
                    tokens,
                    logits,
                    reply,
                } => reply(catch_panic(|| evaluate(&model, &tokens, logits))),
                Command::Shutdown => {
                    for sequence in active.iter_mut() {
                        sequence.abort();
                    }
                    return;
                }
            }
            next = inbox.try_recv().ok();
        }
        active.retain_mut(|sequence| {
            let done = catch_panic(|| Ok(sequence.step(&model, &compiler)));
            // A panic mid-step already lost the sequence's state: end it as aborted.
            let done = done.unwrap_or_else(|_| {
                sequence.abort();
                true
            });
            if done {
                if let (Some(id), Some(kept)) = (sequence.session(), sequence.take_kept()) {
                    sessions.insert(id, kept);
                }
            }
            !done
        });
    }
}

fn evaluate(model: &Model, tokens: &[u32], logits: Logits) -> Result<Vec<f32>> {
    check_prompt(tokens, model, Room::None)?;
    let mut cache = SequenceCache::new(model.decoder.spec().num_layers());
    let out = model.decoder.forward(tokens, &mut cache, logits)?;
    Ok(out.flatten_all()?.to_vec1::<f32>()?)
}
