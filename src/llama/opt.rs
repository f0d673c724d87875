//! Training through llama.cpp's optimizer (`llama_opt_*`), with medllm's two patches: the
//! tensors of an attached LoRA adapter train with the base frozen, and a negative label masks
//! its position out of the loss. One call trains (or evaluates) one window of tokens, so the
//! caller owns data order, schedule, checkpoints and interruption.

use std::ffi::{CString, c_void};
use std::path::Path;
use std::ptr::NonNull;

use super::model::path_to_cstring;
use super::{Context, ContextParams, LlamaError, LoraAdapter, Model, Token};

/// A label that masks its position: no loss, no gradient.
pub const IGNORED_LABEL: i32 = -1;

/// A fresh LoRA adapter to train.
#[derive(Debug, Clone)]
pub struct LoraInit {
    /// Inner dimension of A and B.
    pub rank: u32,
    /// The update is scaled by alpha / rank.
    pub alpha: f32,
    /// Tensor kinds such as `attn_q`: every 2-D `blk.N.<kind>.weight` gets a pair.
    pub targets: Vec<String>,
    /// Seed of A's initial values (B starts at zero).
    pub seed: u64,
}

impl<'m> LoraAdapter<'m> {
    /// A new adapter for `model` whose B matrices are zero, so the adapted model starts equal
    /// to the base. Its tensors are F32 in host memory, ready to train.
    pub fn new_trainable(model: &'m Model, init: &LoraInit) -> Result<LoraAdapter<'m>, LlamaError> {
        let targets: Vec<CString> = init
            .targets
            .iter()
            .map(|t| {
                CString::new(t.as_str())
                    .map_err(|_| LlamaError::LoraInit { reason: "a target has a NUL".into() })
            })
            .collect::<Result<_, _>>()?;
        let target_ptrs: Vec<*const std::ffi::c_char> = targets.iter().map(|t| t.as_ptr()).collect();
        let params = llama_sys::llama_lora_train_params {
            rank: init.rank,
            alpha: init.alpha,
            targets: target_ptrs.as_ptr(),
            n_targets: target_ptrs.len(),
            seed: init.seed,
        };
        let _exclusive = model.adapters_write();
        // SAFETY: the model is live for 'm; `target_ptrs` points at NUL-terminated strings that
        // outlive the call; the write lock keeps other threads off the adapter set; null
        // (no matching tensor, rank 0) is handled below.
        let ptr = unsafe { llama_sys::llama_adapter_lora_init_trainable(model.as_ptr(), params) };
        let ptr = NonNull::new(ptr).ok_or_else(|| LlamaError::LoraInit {
            reason: format!("no 2-D tensor of the model is one of {:?}, or the rank is 0", init.targets),
        })?;
        Ok(LoraAdapter::from_raw(ptr, Path::new("(new adapter)"), model))
    }

    /// Writes the adapter as a GGUF that llama.cpp loads (`general.type=adapter`,
    /// `adapter.type=lora`, `adapter.lora.alpha`, `<name>.lora_a`/`.lora_b`). Not atomic: the
    /// caller writes to a temporary name and renames.
    pub fn save(&self, path: &Path) -> Result<(), LlamaError> {
        let c_path = path_to_cstring(path)?;
        // SAFETY: the adapter is live; `c_path` is NUL-terminated; the call only reads it.
        let status = unsafe { llama_sys::llama_adapter_lora_save(self.as_ptr(), c_path.as_ptr()) };
        if status == 0 { Ok(()) } else { Err(LlamaError::Save { path: path.to_path_buf() }) }
    }

    /// Number of lora_a plus lora_b tensors.
    pub fn n_tensors(&self) -> usize {
        // SAFETY: the adapter is live; the call only reads it.
        unsafe { llama_sys::llama_adapter_lora_n_tensors(self.as_ptr()) }.max(0) as usize
    }
}

impl Model {
    /// Writes the model as llama.cpp holds it now (after full fine-tuning) as a GGUF. Not
    /// atomic: the caller writes to a temporary name and renames.
    pub fn save(&self, path: &Path) -> Result<(), LlamaError> {
        let c_path = path_to_cstring(path)?;
        // SAFETY: the model is live; `c_path` is NUL-terminated; the call only reads the model.
        unsafe { llama_sys::llama_model_save_to_file(self.as_ptr(), c_path.as_ptr()) };
        // llama.cpp reports no status: a file that is there and opens as GGUF is the check.
        match crate::gguf::GgufFile::open(path) {
            Ok(_) => Ok(()),
            Err(_) => Err(LlamaError::Save { path: path.to_path_buf() }),
        }
    }

    /// The raw bytes of one of the model's tensors, as llama.cpp holds them now (after any
    /// training). None if the model has no tensor of that name.
    pub fn tensor_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: the model is live; `c_name` is NUL-terminated; the tensor returned (if any)
        // lives as long as the model.
        let tensor = unsafe { llama_sys::llama_model_get_tensor_by_name(self.as_ptr(), c_name.as_ptr()) };
        let tensor = NonNull::new(tensor)?;
        // SAFETY: a live tensor of this model.
        let size = unsafe { llama_sys::ggml_nbytes(tensor.as_ptr()) };
        let mut bytes = vec![0u8; size];
        // SAFETY: `bytes` has room for the tensor's `size` bytes; the tensor has a buffer
        // (model tensors are allocated when the model loads with weights).
        unsafe { llama_sys::ggml_backend_tensor_get(tensor.as_ptr(), bytes.as_mut_ptr().cast(), 0, size) };
        Some(bytes)
    }

    /// Overwrites one of the model's F32 tensors in place (tests perturb weights with it).
    #[cfg(test)]
    pub(crate) fn set_tensor_f32(&self, name: &str, values: &[f32]) {
        let c_name = CString::new(name).unwrap();
        // SAFETY: the model is live; `c_name` is NUL-terminated.
        let tensor = unsafe { llama_sys::llama_model_get_tensor_by_name(self.as_ptr(), c_name.as_ptr()) };
        let tensor = NonNull::new(tensor).expect("no such tensor");
        // SAFETY: a live tensor of this model.
        let size = unsafe { llama_sys::ggml_nbytes(tensor.as_ptr()) };
        assert_eq!(size, values.len() * 4, "{name} is not an F32 tensor of {} values", values.len());
        // SAFETY: `values` holds exactly the tensor's `size` bytes; the tensor has a buffer
        // (the model was loaded with weights).
        unsafe { llama_sys::ggml_backend_tensor_set(tensor.as_ptr(), values.as_ptr().cast(), 0, size) };
    }
}

/// Which optimizer updates the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// AdamW with decoupled weight decay.
    AdamW,
    /// Plain stochastic gradient descent (with weight decay).
    Sgd,
}

/// The optimizer's hyper-parameters for the next step; the learning rate changes as the
/// schedule goes.
#[derive(Debug, Clone, Copy)]
pub struct OptimizerStep {
    /// Learning rate.
    pub learning_rate: f32,
    /// AdamW's first moment decay.
    pub beta1: f32,
    /// AdamW's second moment decay.
    pub beta2: f32,
    /// AdamW's epsilon.
    pub epsilon: f32,
    /// Weight decay (0 to disable).
    pub weight_decay: f32,
}

impl Default for OptimizerStep {
    fn default() -> Self {
        OptimizerStep { learning_rate: 1e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.0 }
    }
}

/// What trains: only attached adapters (base frozen), or every F32 tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainable {
    /// The LoRA adapters attached to the context; the base does not change.
    AdaptersOnly,
    /// Every F32 model tensor llama.cpp can train (full fine-tuning).
    AllModelTensors,
}

/// How to set up training.
#[derive(Debug, Clone)]
pub struct TrainerParams {
    /// Tokens per window (the training context).
    pub window: u32,
    /// CPU threads.
    pub threads: i32,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Windows whose gradients add up before one optimizer step.
    pub grad_accumulation: u32,
    /// What trains.
    pub trainable: Trainable,
}

/// A context set up for training: one window per call to [`Trainer::window`].
pub struct Trainer<'m> {
    context: Context<'m>,
    window: usize,
    /// Read by llama.cpp's callback before every optimizer step; boxed so its address stays put.
    step: Box<llama_sys::ggml_opt_optimizer_params>,
    result: NonNull<llama_sys::ggml_opt_result>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("window", &self.window).finish()
    }
}

unsafe extern "C" fn reject_every_tensor(
    _tensor: *const llama_sys::ggml_tensor,
    _userdata: *mut c_void,
) -> bool {
    false
}

unsafe extern "C" fn current_step(userdata: *mut c_void) -> llama_sys::ggml_opt_optimizer_params {
    // SAFETY: userdata is the Trainer's boxed parameters, alive while its context is (the
    // callback runs only inside Trainer::window).
    unsafe { *(userdata as *const llama_sys::ggml_opt_optimizer_params) }
}

impl<'m> Trainer<'m> {
    /// A training context for `model` with `adapters` attached (they train when
    /// `params.trainable` is [`Trainable::AdaptersOnly`]).
    pub fn new(
        model: &'m Model,
        adapters: &[&'m LoraAdapter<'m>],
        params: &TrainerParams,
    ) -> Result<Trainer<'m>, LlamaError> {
        if params.window < 8 {
            return Err(LlamaError::TrainSetup {
                reason: format!("a window of {} tokens is too short", params.window),
            });
        }
        if model.repacked {
            // Repacked weights serve forward products only; the backward pass would abort.
            return Err(LlamaError::TrainSetup {
                reason: "the model was loaded with repacked weights; load it with ModelParams::repack off to train".into(),
            });
        }
        if params.trainable == Trainable::AdaptersOnly && adapters.is_empty() {
            return Err(LlamaError::LoraInit { reason: "adapter training needs an adapter".into() });
        }
        // The whole window is one physical batch: gradients cannot flow through the KV cache,
        // so llama.cpp trains the K and V projections only when the ubatch is the context.
        let context_params = ContextParams {
            n_ctx: params.window,
            n_batch: params.window,
            n_ubatch: params.window,
            n_seq_max: 1,
            n_threads: params.threads,
            n_threads_batch: params.threads,
            unified_kv: false,
            f32_kv: true,
        };
        let mut context = Context::new(model, &context_params)?;
        // llama.cpp rounds the context up (to a multiple of 256 tokens); the attention reads
        // the window's own K and V, and so passes gradients to the K and V projections, only
        // when the window fills the whole context. Otherwise it reads them from the cache,
        // which gradients do not cross, and those projections (and, through them, every
        // earlier layer) would train on a truncated gradient.
        if context.n_ctx() != params.window {
            return Err(LlamaError::TrainSetup {
                reason: format!(
                    "a training window of {} tokens: llama.cpp needs the window to fill its context of {} \
                     (use a multiple of 256)",
                    params.window,
                    context.n_ctx()
                ),
            });
        }
        let attached: Vec<(&'m LoraAdapter<'m>, f32)> = adapters.iter().map(|a| (*a, 1.0)).collect();
        context.set_adapters(&attached)?;
        let mut step = Box::new(optimizer_params(OptimizerStep::default()));
        let raw = llama_sys::llama_opt_params {
            n_ctx_train: params.window,
            param_filter: Some(match params.trainable {
                Trainable::AdaptersOnly => reject_every_tensor,
                Trainable::AllModelTensors => llama_sys::llama_opt_param_filter_all,
            }),
            param_filter_ud: std::ptr::null_mut(),
            get_opt_pars: Some(current_step),
            get_opt_pars_ud: (&mut *step as *mut llama_sys::ggml_opt_optimizer_params).cast(),
            optimizer_type: match params.optimizer {
                Optimizer::AdamW => llama_sys::GGML_OPT_OPTIMIZER_TYPE_ADAMW,
                Optimizer::Sgd => llama_sys::GGML_OPT_OPTIMIZER_TYPE_SGD,
            },
            n_grad_accum: params.grad_accumulation.max(1) as i32,
        };
        let _shared = model.adapters_read();
        // SAFETY: the context and model are live; the callbacks are plain functions and the
        // userdata box lives in the returned Trainer as long as the context; opt_init runs once
        // per context (a Trainer owns its context).
        unsafe { llama_sys::llama_opt_init(context.as_ptr(), model.as_ptr(), raw) };
        // SAFETY: allocates an empty result; freed in Drop.
        let result = unsafe { llama_sys::ggml_opt_result_init() };
        let result = NonNull::new(result).ok_or(LlamaError::ContextCreate { n_ctx: params.window })?;
        Ok(Trainer { context, window: params.window as usize, step, result })
    }

    /// Tokens per window.
    pub fn window_len(&self) -> usize {
        self.window
    }

    /// Sets the hyper-parameters of the next optimizer steps.
    pub fn set_step(&mut self, step: OptimizerStep) {
        *self.step = optimizer_params(step);
    }

    /// One window: `tokens` and their `labels` (the expected next token, or [`IGNORED_LABEL`]),
    /// both exactly [`Trainer::window_len`] long. Trains when `train` is set (an optimizer step
    /// every `grad_accumulation` windows), else only evaluates. Returns the mean loss over the
    /// window's labelled positions.
    pub fn window(&mut self, tokens: &[Token], labels: &[i32], train: bool) -> Result<f64, LlamaError> {
        if tokens.len() != self.window || labels.len() != self.window {
            return Err(LlamaError::TrainWindow {
                reason: format!(
                    "{} tokens and {} labels for a window of {}",
                    tokens.len(),
                    labels.len(),
                    self.window
                ),
            });
        }
        let raw_tokens: Vec<i32> = tokens.iter().map(|t| t.0).collect();
        let _shared = self.context.model().adapters_read();
        // SAFETY: the result is live and owned by this trainer.
        unsafe { llama_sys::ggml_opt_result_reset(self.result.as_ptr()) };
        // SAFETY: both arrays hold `window` entries; the context went through opt_init (in
        // new); the result is live; llama.cpp checks every token and label against the
        // vocabulary before use.
        let status = unsafe {
            llama_sys::llama_opt_window(
                self.context.as_ptr(),
                raw_tokens.as_ptr(),
                labels.as_ptr(),
                self.window as i32,
                train,
                self.result.as_ptr(),
            )
        };
        if status == -3 {
            // SAFETY: the context is live; the string (owned by the context) is copied at once.
            let op = unsafe { llama_sys::llama_opt_untrainable_op(self.context.as_ptr()) };
            let op = if op.is_null() {
                "an op it did not name".to_string()
            } else {
                // SAFETY: non-null, NUL-terminated, alive until the next window.
                unsafe { std::ffi::CStr::from_ptr(op) }.to_string_lossy().into_owned()
            };
            return Err(LlamaError::Untrainable {
                architecture: self.context.model().architecture().to_string(),
                op,
            });
        }
        if status != 0 {
            return Err(LlamaError::TrainWindow {
                reason: if status == -2 {
                    "the saved optimizer state does not match the trainable tensors".into()
                } else {
                    "llama.cpp refused the window (a token outside the vocabulary?)".into()
                },
            });
        }
        let mut loss = 0.0f64;
        let mut uncertainty = 0.0f64;
        // SAFETY: the result is live; both out-pointers are valid f64s.
        unsafe { llama_sys::ggml_opt_result_loss(self.result.as_ptr(), &mut loss, &mut uncertainty) };
        Ok(loss)
    }

    /// Writes the optimizer's state (AdamW moments, step count). Not atomic: the caller renames.
    pub fn save_state(&self, path: &Path) -> Result<(), LlamaError> {
        let c_path = path_to_cstring(path)?;
        // SAFETY: the context is live and went through opt_init; the path is NUL-terminated.
        let status = unsafe { llama_sys::llama_opt_state_save(self.context.as_ptr(), c_path.as_ptr()) };
        if status == 0 { Ok(()) } else { Err(LlamaError::Save { path: path.to_path_buf() }) }
    }

    /// Reads optimizer state written by [`Trainer::save_state`]; it takes effect at the next
    /// window (a mismatch with the trainable tensors is an error there).
    pub fn load_state(&mut self, path: &Path) -> Result<(), LlamaError> {
        let c_path = path_to_cstring(path)?;
        // SAFETY: the context is live and went through opt_init; the path is NUL-terminated.
        let status = unsafe { llama_sys::llama_opt_state_load(self.context.as_ptr(), c_path.as_ptr()) };
        let why = match status {
            0 => return Ok(()),
            -3 => "not a GGUF file",
            -4 => "no optimizer step count in it",
            -5 => "a moment tensor is not F32",
            _ => "unreadable",
        };
        Err(LlamaError::TrainWindow {
            reason: format!("cannot read optimizer state {}: {why}", path.display()),
        })
    }
}

impl Drop for Trainer<'_> {
    fn drop(&mut self) {
        // SAFETY: the result came from ggml_opt_result_init and is freed once; the context
        // (dropped after this) frees its own optimizer context.
        unsafe { llama_sys::ggml_opt_result_free(self.result.as_ptr()) }
    }
}

fn optimizer_params(step: OptimizerStep) -> llama_sys::ggml_opt_optimizer_params {
    let mut raw = llama_sys::ggml_opt_optimizer_params::default();
    raw.adamw.alpha = step.learning_rate;
    raw.adamw.beta1 = step.beta1;
    raw.adamw.beta2 = step.beta2;
    raw.adamw.eps = step.epsilon;
    raw.adamw.wd = step.weight_decay;
    raw.sgd.alpha = step.learning_rate;
    raw.sgd.wd = step.weight_decay;
    raw
}
