//! One sequence being decoded: its prompt still to evaluate, the tokens chosen so far and
//! the output bytes they spell, its constraint, repetition control and budget, and what of
//! it is in the KV cache. Front ends put sequences' tokens into one batch
//! ([`Generation::add_to_batch`]), decode, and let each choose ([`Generation::after_decode`]).

use llguidance::toktrie::SimpleVob;

use super::SpeculationCounts;
use super::choice::{choose, only_token};
use super::lookup::PromptLookup;
use super::repeats::ArrayRepeatScanner;
use crate::data::rng::SeededRng;
use crate::extract::{ConstraintFactory, DocumentConstraint, ExtractError};
use crate::llama::{Batch, Context, LlamaError, Model, Sampler, Token};

/// Longest run of one token allowed inside a string under repetition control (runs of
/// forced tokens aside). Numbers are left alone: tokenizers that split digits make
/// `10000000` a run.
const MAX_TOKEN_RUN: usize = 8;

/// How a sequence picks its tokens.
pub(crate) enum Chooser<'m> {
    /// llguidance: a mask at every step, forced text, rollback.
    Guided(Box<DocumentConstraint>),
    /// llama.cpp's sampler chain (GBNF grammars, unconstrained sampling); it keeps its own
    /// history, so nothing it chose can be taken back.
    Sampler(Sampler<'m>),
}

/// Why a sequence stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// End of generation, of the constraint, or a stop text (the front end's).
    Stop,
    /// The token budget ran out.
    Length,
    /// The constraint or llama.cpp failed; the message holds no generated text.
    Failed(String),
}

/// The choices of a sequence that are not its prompt.
pub(crate) struct GenerationSettings {
    /// Most tokens generated.
    pub budget: usize,
    /// Sampling temperature under a [`Chooser::Guided`] constraint (0: greedy).
    pub temperature: f32,
    /// Seed of that sampling.
    pub seed: u64,
    /// Roll back a repeated array item and close the array; ban long runs of one token
    /// inside strings.
    pub repeat_control: bool,
    /// Tokens whose text drafts are copied from, when speculative copying is on (greedy,
    /// guided, and a cache that can drop positions only; see [`Generation::new`]).
    pub speculate_from: Option<Vec<Token>>,
}

/// One sequence of a context, from its prompt to its end.
pub(crate) struct Generation<'m> {
    /// The sequence id in the context.
    pub seq: i32,
    /// Prompt tokens not yet decoded, and how many of `prompt` were.
    prompt: Vec<Token>,
    prompt_done: usize,
    /// KV position of the first generated token.
    generated_from: i32,
    chooser: Chooser<'m>,
    eos: Option<Token>,
    settings: GenerationSettings,
    rng: SeededRng,
    /// Generated tokens, the output bytes, and the output offset where each token ends.
    pub tokens: Vec<Token>,
    pub token_ends: Vec<usize>,
    pub output: Vec<u8>,
    /// The allowed set computed after the last forced token, for the next choice.
    next_mask: Option<SimpleVob>,
    repeats: ArrayRepeatScanner,
    /// Generated tokens (chosen and drafted) whose keys and values are in the cache.
    in_cache: Vec<Token>,
    /// Logits rows of the last batch: the last queued token, then each draft.
    rows: Vec<usize>,
    drafts: Vec<Token>,
    /// The draft is padding (see [`Generation::pad`]), not a guess: it is not counted.
    padded: bool,
    lookup: Option<PromptLookup>,
    can_rewind: bool,
    /// The cache of the sequence was emptied after a failed decode.
    cache_lost: bool,
    /// Drafted and accepted tokens so far.
    pub speculation: SpeculationCounts,
    /// Set when the sequence has ended.
    pub finish: Option<Finish>,
}

impl<'m> Generation<'m> {
    /// A sequence in `seq` whose first `start` positions are already in the cache and whose
    /// `prompt` follows them. Speculation is on only where it cannot change the output:
    /// greedy choice under an llguidance constraint (the mask is checked at every draft
    /// position and the matcher rolls back) on a cache that can drop positions.
    pub fn new(
        model: &Model,
        factory: Option<&ConstraintFactory>,
        seq: i32,
        start: usize,
        prompt: Vec<Token>,
        chooser: Chooser<'m>,
        mut settings: GenerationSettings,
    ) -> Generation<'m> {
        let guided = matches!(chooser, Chooser::Guided(_));
        let eos = if guided { factory.map(ConstraintFactory::eos) } else { None };
        let can_rewind = model.can_rewind_cache();
        let speculate = guided && settings.temperature <= 0.0 && can_rewind;
        let lookup = settings
            .speculate_from
            .take()
            .filter(|_| speculate)
            .map(|tokens| PromptLookup::new(model, tokens));
        let rng = SeededRng::from_state(settings.seed);
        Generation {
            seq,
            generated_from: (start + prompt.len()) as i32,
            prompt,
            prompt_done: 0,
            chooser,
            eos,
            settings,
            rng,
            tokens: Vec::new(),
            token_ends: Vec::new(),
            output: Vec::new(),
            next_mask: None,
            repeats: ArrayRepeatScanner::default(),
            in_cache: Vec::new(),
            rows: Vec::new(),
            drafts: Vec::new(),
            padded: false,
            lookup,
            can_rewind,
            cache_lost: false,
            speculation: SpeculationCounts::default(),
            finish: None,
        }
    }

    /// Tokens waiting to be decoded: prompt tokens first, then chosen ones.
    pub fn pending(&self) -> usize {
        (self.prompt.len() - self.prompt_done) + (self.tokens.len() - self.in_cache.len())
    }

    /// Whether the prompt has not been decoded whole yet.
    pub fn in_prompt(&self) -> bool {
        self.prompt_done < self.prompt.len()
    }

    /// The tokens of this sequence in the cache from its `start` on (the decoded prompt,
    /// then generated tokens), or None when the cache was emptied.
    pub fn cached_tokens(&self) -> Option<Vec<Token>> {
        (!self.cache_lost)
            .then(|| self.prompt[..self.prompt_done].iter().chain(&self.in_cache).copied().collect())
    }

    /// Records that the sequence's cache was emptied.
    pub(super) fn lose_cache(&mut self) {
        self.cache_lost = true;
        self.in_cache.clear();
    }

    /// Adds what this sequence decodes next to `batch`, as much as fits: prompt tokens, or
    /// the tokens chosen (and forced) since the last decode followed by a draft. Logits
    /// are asked for only where a choice is made. Returns the tokens added.
    pub fn add_to_batch(&mut self, model: &Model, batch: &mut Batch) -> Result<usize, LlamaError> {
        let room = batch.remaining();
        if self.finish.is_some() || room == 0 {
            return Ok(0);
        }
        if self.in_prompt() {
            let start = self.generated_from as usize - self.prompt.len();
            let take = (self.prompt.len() - self.prompt_done).min(room);
            let whole = self.prompt_done + take == self.prompt.len();
            for k in 0..take {
                let at = self.prompt_done + k;
                let wants_logits = whole && k + 1 == take;
                let index = batch.add(self.prompt[at], (start + at) as i32, &[self.seq], wants_logits)?;
                if wants_logits {
                    self.rows.push(index);
                }
            }
            self.prompt_done += take;
            return Ok(take);
        }
        let queued = &self.tokens[self.in_cache.len()..];
        let take = queued.len().min(room);
        let whole = take == queued.len();
        let mut pos = self.generated_from + self.in_cache.len() as i32;
        for (k, &token) in queued[..take].iter().enumerate() {
            let wants_logits = whole && k + 1 == take;
            let index = batch.add(token, pos, &[self.seq], wants_logits)?;
            pos += 1;
            if wants_logits {
                self.rows.push(index);
            }
        }
        self.in_cache.extend_from_slice(&queued[..take]);
        if !whole {
            return Ok(take);
        }
        // A draft only where the next token is the model's choice (not forced) and within
        // the budget: the draft tokens would be chosen by the next steps, if at all.
        if let Some(lookup) = &mut self.lookup
            && self.next_mask.is_some()
        {
            let limit = (room - take).min(self.settings.budget.saturating_sub(self.tokens.len()));
            self.drafts = lookup.draft(model, &self.output, limit);
            for &token in &self.drafts {
                self.rows.push(batch.add(token, pos, &[self.seq], true)?);
                pos += 1;
            }
            self.in_cache.extend_from_slice(&self.drafts);
        }
        Ok(take + self.drafts.len())
    }

    /// Whether this sequence reads the logits of batch token `index`.
    pub(super) fn asks_logits_at(&self, index: usize) -> bool {
        self.rows.contains(&index)
    }

    /// Adds one more token after this sequence's last in `batch`, with logits: a draft
    /// that is a copy of the last token, verified (and most often dropped) like any other,
    /// so that a batch of one token still has two output rows (see
    /// [`super::decode_step`]). Nothing is added past the budget.
    pub(super) fn pad(&mut self, batch: &mut Batch) -> Result<(), LlamaError> {
        let last = self.tokens.last().or(self.prompt.last()).copied();
        let Some(token) = last.filter(|_| self.drafts.is_empty() && self.tokens.len() < self.settings.budget)
        else {
            return Ok(());
        };
        let pos = self.generated_from + self.in_cache.len() as i32;
        self.rows.push(batch.add(token, pos, &[self.seq], true)?);
        self.drafts.push(token);
        self.in_cache.push(token);
        self.padded = true;
        Ok(())
    }

    /// After the batch that held this sequence's tokens was decoded: makes the choice its
    /// logits allow, then verifies the draft position by position (each must be what the
    /// choice there would be, under the constraint's mask at that position), and drops
    /// from the cache what was decoded past the tokens kept.
    pub fn after_decode(
        &mut self,
        model: &Model,
        factory: Option<&ConstraintFactory>,
        ctx: &mut Context<'m>,
    ) -> Result<(), ExtractError> {
        let rows = std::mem::take(&mut self.rows);
        let drafts = std::mem::take(&mut self.drafts);
        // `rows[k]` holds the logits after the last queued token and the first `k` drafts;
        // it is valid only while the output has taken exactly those drafts.
        let mut accepted = 0;
        let mut outcome = Ok(());
        while let Some(&row) = rows.get(accepted) {
            let before = self.tokens.len();
            if let Err(e) = self.step(model, factory, ctx, row) {
                outcome = Err(e);
                break;
            }
            // A step adds the chosen token and what the constraint forces after it; when
            // all of them are the next drafts, the row after them is valid too.
            let added = self.tokens.get(before..).unwrap_or_default();
            let follows_drafts = !added.is_empty()
                && drafts.get(accepted..accepted + added.len()).is_some_and(|next| next == added);
            if self.finish.is_some() || !follows_drafts {
                break;
            }
            accepted += added.len();
        }
        if !std::mem::take(&mut self.padded) {
            if let Some(lookup) = &mut self.lookup {
                lookup.record(drafts.len(), accepted);
            }
            self.speculation.add(SpeculationCounts { drafted: drafts.len(), accepted });
        }
        self.drop_stale_cache(ctx);
        self.queue_a_choice(ctx);
        outcome
    }

    /// The next choice needs the logits after the last token, so that token must be in the
    /// next batch. When every token is in the cache already (a refused draft that ended
    /// where the output ends, an array item taken back onto drafted tokens), its position
    /// is dropped and decoded again.
    fn queue_a_choice(&mut self, ctx: &mut Context<'m>) {
        if self.finish.is_some()
            || self.cache_lost
            || self.in_prompt()
            || self.tokens.len() > self.in_cache.len()
        {
            return;
        }
        let dropped = if self.in_cache.is_empty() {
            // No generated token left: the prompt's last one gives the logits.
            let Some(done) = self.prompt_done.checked_sub(1) else {
                self.finish = Some(Finish::Failed("nothing is left to decode for the next choice".into()));
                return;
            };
            let at = self.generated_from - 1;
            ctx.remove_positions(self.seq, Some(at), None).then(|| self.prompt_done = done)
        } else {
            let at = self.generated_from + self.in_cache.len() as i32 - 1;
            ctx.remove_positions(self.seq, Some(at), None)
                .then(|| self.in_cache.truncate(self.in_cache.len() - 1))
        };
        if dropped.is_none() {
            self.finish = Some(Finish::Failed("the cache cannot drop positions".into()));
        }
    }

    /// Drops from the cache the generated tokens that are no longer the output's (refused
    /// drafts, a repeated item taken back).
    fn drop_stale_cache(&mut self, ctx: &mut Context<'m>) {
        let keep = self.in_cache.iter().zip(&self.tokens).take_while(|(a, b)| a == b).count();
        if keep < self.in_cache.len() {
            let from = self.generated_from + keep as i32;
            if ctx.remove_positions(self.seq, Some(from), None) {
                self.in_cache.truncate(keep);
            } else {
                // Only reachable when the cache cannot rewind, where nothing is drafted or
                // cut; the sequence cannot continue from a cache that disagrees with it.
                self.finish = Some(Finish::Failed("the cache cannot drop positions".into()));
            }
        }
    }

    /// Picks the next token from logits row `row` and appends it with the tokens the
    /// constraint forces after it. A repeated array item is taken back and the array
    /// closed.
    fn step(
        &mut self,
        model: &Model,
        factory: Option<&ConstraintFactory>,
        ctx: &mut Context<'m>,
        row: usize,
    ) -> Result<(), ExtractError> {
        ctx.check_logits(row)?;
        let token = match &mut self.chooser {
            Chooser::Sampler(sampler) => sampler.sample(ctx, row),
            Chooser::Guided(constraint) => {
                let mut mask = match self.next_mask.take() {
                    Some(mask) => mask,
                    None => constraint.allowed()?,
                };
                // A token repeated many times in a row is a loop ("2000000…"), not data.
                if self.settings.repeat_control
                    && let Some(&last) = self.tokens.last()
                    && self.repeats.in_string()
                    && self.tokens.len() >= MAX_TOKEN_RUN
                    && self.tokens[self.tokens.len() - MAX_TOKEN_RUN..].iter().all(|&t| t == last)
                    && mask.num_set() > 1
                {
                    mask.disallow_token(last.0 as u32);
                }
                let logits = ctx.logits(row).ok_or(ExtractError::Constraint("no logits".into()))?;
                choose(logits, &mask, self.settings.temperature, &mut self.rng)
                    .ok_or_else(|| ExtractError::Constraint("the schema allows no token here".into()))?
            }
        };
        if model.is_end_of_generation(token) || Some(token) == self.eos {
            self.finish = Some(Finish::Stop);
            return Ok(());
        }
        self.push_token(model, token)?;
        if let Some(factory) = factory.filter(|_| matches!(self.chooser, Chooser::Guided(_))) {
            self.follow_forced(model, factory)?;
            if self.settings.repeat_control
                && self.finish.is_none()
                && let Some(repeat) = self.repeats.scan(&self.output)
                && self.cut_repeat(model, repeat.cut_at)?
            {
                self.follow_forced(model, factory)?;
            }
        }
        if self.finish.is_none() && self.tokens.len() >= self.settings.budget {
            self.finish = Some(Finish::Length);
        }
        Ok(())
    }

    /// Appends a chosen token to the output and, under a constraint, to the matcher.
    fn push_token(&mut self, model: &Model, token: Token) -> Result<(), ExtractError> {
        if let Chooser::Guided(constraint) = &mut self.chooser {
            constraint.accept(token)?;
        }
        self.append(model, token);
        Ok(())
    }

    fn append(&mut self, model: &Model, token: Token) {
        self.output.extend(model.token_piece(token, false));
        self.tokens.push(token);
        self.token_ends.push(self.output.len());
    }

    /// Accepts the text the grammar forces (keys, punctuation), until a real choice or the
    /// end; those tokens are then decoded in one batch, with no choice between them.
    fn follow_forced(&mut self, model: &Model, factory: &ConstraintFactory) -> Result<(), ExtractError> {
        loop {
            let Chooser::Guided(constraint) = &mut self.chooser else { return Ok(()) };
            if constraint.is_stopped() {
                self.finish = Some(match constraint.error() {
                    Some(e) => Finish::Failed(format!("constraint failed: {e}")),
                    None => Finish::Stop,
                });
                return Ok(());
            }
            let forced = constraint.forced_bytes();
            if !forced.is_empty() {
                let mut tokens = factory.tokenize_forced(model, &forced);
                tokens.truncate(self.settings.budget.saturating_sub(self.tokens.len()));
                let accepted = constraint.accept_prefix(&tokens)?;
                for &token in &tokens[..accepted] {
                    self.append(model, token);
                }
                if accepted > 0 {
                    continue;
                }
            }
            let Chooser::Guided(constraint) = &mut self.chooser else { return Ok(()) };
            let mask = constraint.allowed()?;
            match only_token(&mask) {
                Some(token) if Some(token) == self.eos => {
                    self.finish = Some(Finish::Stop);
                    return Ok(());
                }
                Some(token) if self.tokens.len() < self.settings.budget => self.push_token(model, token)?,
                _ => {
                    self.next_mask = Some(mask);
                    return Ok(());
                }
            }
        }
    }

    /// Removes the output from byte `cut_at` on (a repeated array item and its comma) and
    /// closes the array; the cache drops the removed tokens after the step. Returns false,
    /// leaving everything as it was, when the schema does not allow the array to end there
    /// (e.g. `minItems`), or the cache would have to drop positions it cannot.
    fn cut_repeat(&mut self, model: &Model, cut_at: usize) -> Result<bool, ExtractError> {
        let Chooser::Guided(constraint) = &mut self.chooser else { return Ok(false) };
        let keep = self.token_ends.partition_point(|&end| end <= cut_at);
        if keep < self.in_cache.len() && !self.can_rewind {
            return Ok(false);
        }
        let saved = (constraint.clone(), self.tokens.clone(), self.token_ends.clone(), self.output.clone());
        let kept_end = if keep == 0 { 0 } else { self.token_ends[keep - 1] };
        // What must follow the kept tokens: the rest of the last good item, then `]`.
        let mut tail = self.output[kept_end..cut_at].to_vec();
        tail.push(b']');
        constraint.rollback(self.tokens.len() - keep)?;
        self.tokens.truncate(keep);
        self.token_ends.truncate(keep);
        self.output.truncate(kept_end);
        let mut rest: &[u8] = &tail;
        while !rest.is_empty() {
            let Chooser::Guided(constraint) = &mut self.chooser else { unreachable!("checked above") };
            let mask = constraint.allowed()?;
            let mut best: Option<(Token, usize)> = None;
            mask.iter_set_entries(|i| {
                let piece = model.token_piece(Token(i as i32), false);
                if !piece.is_empty() && rest.starts_with(&piece) && best.is_none_or(|(_, n)| piece.len() > n)
                {
                    best = Some((Token(i as i32), piece.len()));
                }
            });
            let Some((token, len)) = best else {
                let Chooser::Guided(constraint) = &mut self.chooser else { unreachable!("checked above") };
                (*constraint, self.tokens, self.token_ends, self.output) = saved;
                return Ok(false);
            };
            self.push_token(model, token)?;
            rest = &rest[len..];
        }
        self.next_mask = None;
        self.repeats = ArrayRepeatScanner::default();
        self.repeats.scan(&self.output);
        tracing::debug!("sequence {}: repeated array item removed, array closed", self.seq);
        Ok(true)
    }
}
