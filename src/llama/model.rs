//! A loaded model: weights (memory-mapped), vocabulary, metadata, chat template.

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::backend::init_backend;
use super::{LlamaError, Token};
use crate::gguf::{GgufFile, LoadScope};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct ModelParams {
    /// Memory-map the file instead of reading it (default: yes).
    pub use_mmap: bool,
    /// Load only the vocabulary, no weights (for tokenising).
    pub vocab_only: bool,
    /// Let llama.cpp repack weights of some quantized types (Q4_0, Q4_K, IQ4_NL …) into its
    /// CPU-specific layouts (default: yes). Faster inference, but those buffers serve only
    /// forward matrix products: training must turn it off, as its backward pass reads the
    /// weights in other ways (dequantising them).
    pub repack: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams { use_mmap: true, vocab_only: false, repack: true }
    }
}

/// A model loaded by llama.cpp. Immutable once loaded; contexts and adapters borrow it.
#[derive(Debug)]
pub struct Model {
    ptr: NonNull<llama_sys::llama_model>,
    vocab: NonNull<llama_sys::llama_vocab>,
    path: PathBuf,
    architecture: String,
    /// Loaded with [`ModelParams::repack`]: fit for inference only.
    pub(crate) repacked: bool,
    /// Loading or freeing an adapter changes the model's adapter set, which creating a
    /// context and decoding read: writers exclude readers across threads.
    pub(crate) adapter_set: std::sync::RwLock<()>,
}

// SAFETY: a llama_model is not mutated after loading, except its adapter set, which is
// guarded by `adapter_set`; llama.cpp's own server shares one model between threads, each
// with its own context. Freeing happens only in Drop.
unsafe impl Send for Model {}
// SAFETY: as above; methods take `&self` and only read, adapter changes hold the write lock.
unsafe impl Sync for Model {}

impl Model {
    /// Loads the GGUF model at `path`. The header, and the hyperparameters and vocabulary
    /// llama.cpp would abort on, are checked in Rust first, so a truncated, corrupt or
    /// inconsistent file is an error here rather than an abort inside llama.cpp.
    pub fn load(path: &Path, params: &ModelParams) -> Result<Model, LlamaError> {
        if let Err(e) = std::fs::File::open(path) {
            return Err(LlamaError::ModelUnreadable { path: path.to_path_buf(), reason: e.to_string() });
        }
        let header = GgufFile::open(path)?;
        // A vocab-only load stops before the hyperparameters (llama_model_base::load_hparams).
        header.check_loadable(if params.vocab_only {
            LoadScope::Vocabulary
        } else {
            LoadScope::Everything
        })?;
        let architecture = header.architecture().unwrap_or("unknown").to_string();
        init_backend();
        let c_path = path_to_cstring(path)?;
        // SAFETY: returns a struct of plain values by copy.
        let mut raw = unsafe { llama_sys::llama_model_default_params() };
        raw.load_mode =
            if params.use_mmap { llama_sys::LLAMA_LOAD_MODE_MMAP } else { llama_sys::LLAMA_LOAD_MODE_NONE };
        raw.vocab_only = params.vocab_only;
        raw.use_extra_bufts = params.repack;
        raw.n_gpu_layers = 0;
        // SAFETY: `c_path` is a valid NUL-terminated path for the call; `raw` is a valid
        // parameter struct; a null return (failure) is handled below.
        let ptr = unsafe { llama_sys::llama_model_load_from_file(c_path.as_ptr(), raw) };
        let ptr = NonNull::new(ptr).ok_or_else(|| LlamaError::ModelLoad { path: path.to_path_buf() })?;
        // SAFETY: `ptr` is a live model; the vocab it returns lives as long as the model.
        let vocab = unsafe { llama_sys::llama_model_get_vocab(ptr.as_ptr()) };
        let Some(vocab) = NonNull::new(vocab.cast_mut()) else {
            // SAFETY: `ptr` came from llama_model_load_from_file and is freed once, here.
            unsafe { llama_sys::llama_model_free(ptr.as_ptr()) };
            return Err(LlamaError::ModelLoad { path: path.to_path_buf() });
        };
        Ok(Model {
            ptr,
            vocab,
            path: path.to_path_buf(),
            architecture,
            repacked: params.repack && !params.vocab_only,
            adapter_set: std::sync::RwLock::new(()),
        })
    }

    /// Shared access to the adapter set (contexts being created or decoding).
    pub(crate) fn adapters_read(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.adapter_set.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Exclusive access to the adapter set (an adapter being loaded or freed).
    pub(crate) fn adapters_write(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.adapter_set.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn as_ptr(&self) -> *mut llama_sys::llama_model {
        self.ptr.as_ptr()
    }

    pub(crate) fn vocab_ptr(&self) -> *const llama_sys::llama_vocab {
        self.vocab.as_ptr()
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture`, such as `llama`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Whether the KV cache can drop a sequence's last positions (attention caches can;
    /// recurrent and hybrid models keep one state per sequence and cannot).
    pub fn can_rewind_cache(&self) -> bool {
        // SAFETY: the model pointer is valid while `self` lives.
        let (recurrent, hybrid) = unsafe {
            (
                llama_sys::llama_model_is_recurrent(self.ptr.as_ptr()),
                llama_sys::llama_model_is_hybrid(self.ptr.as_ptr()),
            )
        };
        !recurrent && !hybrid
    }

    /// Tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        // SAFETY: the vocab pointer is valid while `self` lives.
        let n = unsafe { llama_sys::llama_vocab_n_tokens(self.vocab.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: the model pointer is valid while `self` lives.
        let n = unsafe { llama_sys::llama_model_n_ctx_train(self.ptr.as_ptr()) };
        u32::try_from(n).unwrap_or(0)
    }

    /// Hidden size.
    pub fn n_embd(&self) -> usize {
        // SAFETY: the model pointer is valid while `self` lives.
        let n = unsafe { llama_sys::llama_model_n_embd(self.ptr.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: the model pointer is valid while `self` lives.
        unsafe { llama_sys::llama_model_n_params(self.ptr.as_ptr()) }
    }

    /// Bytes of all tensors.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: the model pointer is valid while `self` lives.
        unsafe { llama_sys::llama_model_size(self.ptr.as_ptr()) }
    }

    /// llama.cpp's one-line description, such as `llama 135M Q4_1`.
    pub fn description(&self) -> String {
        read_c_string(|buf, len| {
            // SAFETY: `buf` has room for `len` bytes; llama.cpp writes at most that.
            unsafe { llama_sys::llama_model_desc(self.ptr.as_ptr(), buf, len) }
        })
        .unwrap_or_default()
    }

    /// A metadata value rendered as a string by llama.cpp.
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        read_c_string(|buf, len| {
            // SAFETY: `key` is NUL-terminated; `buf` has room for `len` bytes.
            unsafe { llama_sys::llama_model_meta_val_str(self.ptr.as_ptr(), key.as_ptr(), buf, len) }
        })
    }

    /// The model's default chat template, if it has one.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: a null name asks for the default template; the returned pointer, when
        // not null, is a NUL-terminated string owned by the model.
        let ptr = unsafe { llama_sys::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: checked non-null above; valid while the model lives, copied at once.
        Some(unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
    }

    /// Beginning-of-sequence token, if the vocabulary has one.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: the vocab pointer is valid while `self` lives.
        let t = unsafe { llama_sys::llama_vocab_bos(self.vocab.as_ptr()) };
        (t >= 0).then_some(Token(t))
    }

    /// End-of-sequence token, if the vocabulary has one.
    pub fn eos(&self) -> Option<Token> {
        // SAFETY: the vocab pointer is valid while `self` lives.
        let t = unsafe { llama_sys::llama_vocab_eos(self.vocab.as_ptr()) };
        (t >= 0).then_some(Token(t))
    }

    /// End-of-turn token (chat models), if the vocabulary has one.
    pub fn end_of_turn(&self) -> Option<Token> {
        // SAFETY: the vocab pointer is valid while `self` lives.
        let t = unsafe { llama_sys::llama_vocab_eot(self.vocab.as_ptr()) };
        (t >= 0).then_some(Token(t))
    }

    /// Whether `token` is an id of this vocabulary. llama.cpp does not check ids itself.
    pub fn has_token(&self, token: Token) -> bool {
        token.0 >= 0 && (token.0 as usize) < self.n_vocab()
    }

    /// Whether the token is a control token (`<|im_start|>`, BOS, ...), not text.
    pub fn is_control(&self, token: Token) -> bool {
        // SAFETY: the vocab pointer is valid and the id was checked to be in range.
        self.has_token(token) && unsafe { llama_sys::llama_vocab_is_control(self.vocab.as_ptr(), token.0) }
    }

    /// Whether generation should stop at this token (end of sequence or of turn).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: the vocab pointer is valid and the id was checked to be in range.
        self.has_token(token) && unsafe { llama_sys::llama_vocab_is_eog(self.vocab.as_ptr(), token.0) }
    }

    /// Whether the tokenizer adds a BOS token when asked for special tokens.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: the vocab pointer is valid while `self` lives.
        unsafe { llama_sys::llama_vocab_get_add_bos(self.vocab.as_ptr()) }
    }

    /// Tokenises `text`. `add_special` adds BOS/EOS as the model asks; `parse_special`
    /// turns control-token text such as `<|im_start|>` into those tokens.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, LlamaError> {
        let len =
            i32::try_from(text.len()).map_err(|_| LlamaError::Tokenize("text longer than 2 GiB".into()))?;
        let mut tokens: Vec<i32> = vec![0; text.len() / 2 + 8];
        for _ in 0..2 {
            let capacity = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            // SAFETY: `text` is valid for `len` bytes (no NUL needed, the length is given);
            // `tokens` has room for `capacity` ids.
            let n = unsafe {
                llama_sys::llama_tokenize(
                    self.vocab.as_ptr(),
                    text.as_ptr().cast::<c_char>(),
                    len,
                    tokens.as_mut_ptr(),
                    capacity,
                    add_special,
                    parse_special,
                )
            };
            // llama.cpp's value for "no result": too many tokens, or (medllm's patch 0006) a
            // vocabulary that cannot spell the text.
            if n == i32::MIN {
                return Err(LlamaError::Tokenize(
                    "too many tokens, or the model's vocabulary cannot spell the text (--verbose shows llama.cpp's reason)"
                        .into(),
                ));
            }
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens.into_iter().map(Token).collect());
            }
            // A negative count is the room needed; grow once and retry.
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        Err(LlamaError::Tokenize("token count changed between calls".into()))
    }

    /// The bytes a token stands for. `special` renders control tokens as their text.
    pub fn token_piece(&self, token: Token, special: bool) -> Vec<u8> {
        // An id outside the vocabulary would make llama.cpp throw through the C boundary.
        if !self.has_token(token) {
            return Vec::new();
        }
        let mut buf = vec![0u8; 64];
        for _ in 0..2 {
            // SAFETY: the id is in range (checked above); `buf` has room for `buf.len()`
            // bytes; llama.cpp writes no more and returns the needed size, negated, when the
            // room is too small.
            let n = unsafe {
                llama_sys::llama_token_to_piece(
                    self.vocab.as_ptr(),
                    token.0,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len() as i32,
                    0,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            // llama.cpp could not render the token (medllm's patch 0006 turns what threw into
            // this value); any other negative number is the room needed.
            if n == i32::MIN {
                return Vec::new();
            }
            buf.resize(n.unsigned_abs() as usize, 0);
        }
        Vec::new()
    }

    /// Text of a token sequence (lossy where tokens split a character).
    pub fn detokenize(&self, tokens: &[Token], special: bool) -> String {
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| self.token_piece(*t, special)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_model_load_from_file and is freed exactly once;
        // contexts and adapters borrow the model, so none outlives it.
        unsafe { llama_sys::llama_model_free(self.ptr.as_ptr()) };
    }
}

/// Calls a llama.cpp "write a string into this buffer" function, growing the buffer when
/// the returned length says it was too small. `None` when the function reports failure.
pub(crate) fn read_c_string(mut call: impl FnMut(*mut c_char, usize) -> i32) -> Option<String> {
    let mut buf = vec![0u8; 256];
    for _ in 0..2 {
        let n = call(buf.as_mut_ptr().cast::<c_char>(), buf.len());
        let n = usize::try_from(n).ok()?;
        if n < buf.len() {
            buf.truncate(n);
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n + 1, 0);
    }
    None
}

pub(crate) fn path_to_cstring(path: &Path) -> Result<CString, LlamaError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| LlamaError::NulByte)
}
