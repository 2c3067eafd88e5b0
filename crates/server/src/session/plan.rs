//! A connection's requests for other cores' keys, between the synchronous pass that queues
//! them and the exchange that answers them.
//!
//! Each request (or each key of a multi-key `get`) owned by another core becomes an [`Op`] in
//! that core's [`Batch`], and, unless it is `noreply`, a [`Piece`]: "the reply to op `k` of
//! the batch for core `c` goes at byte `at` of the output". Local replies are written to the
//! output as they happen, so after the exchange the output is rebuilt once, in request order,
//! by copying the local runs and encoding each remote outcome between them.
//!
//! However many requests a read held, each core gets at most one batch per exchange, and
//! the batches, the piece list and the stitching buffer are kept for the connection's next
//! turn: cross-core requests in steady state allocate nothing.

use crate::batch::{Batch, Op, Outcome};
use crate::mesh::{Gone, Ticket};
use crate::output::Output;
use crate::shard::{Router, ShardId};

use super::form;
pub(crate) use super::form::Form;

/// Where one remote reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    /// Offset in the output: the reply goes before the byte that is there now.
    at: usize,
    shard: ShardId,
    op: u32,
    form: Form,
}

/// Whether an exchange has answered everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchanged {
    /// Every queued request is answered and its reply is in the output.
    Done,
    /// The output holds the replies so far, up to its high-water mark: write it, then call
    /// the exchange again for the rest.
    More,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// One batch per core, by shard id; `None` before a core is first needed.
    batches: Vec<Option<Box<Batch>>>,
    /// Scratch for the exchange.
    tickets: Vec<Option<Ticket>>,
    /// Batches kept back from a trip because they hold replies not yet written.
    parked: Vec<(ShardId, Box<Batch>)>,
    pieces: Vec<Piece>,
    /// While answering: the local replies, as the pass wrote them; otherwise an empty buffer
    /// kept for the next turn.
    local: Output,
    /// Where the queued requests are in being answered.
    phase: Phase,
    /// The connection's socket, for the events its requests log on other cores (`watch`).
    pub(crate) fd: i32,
    /// Whether someone watched fetchers or mutations when this turn began (looked at once
    /// per turn, not per key).
    pub(crate) watched: bool,
}

/// A plan's phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Idle,
    /// Requests are queued; the output holds only the local replies.
    Queued,
    /// The exchange has started: `local[..from]` and the first `next` pieces are written.
    Answering { from: usize, next: usize },
}

impl Plan {
    /// Queues the op that `build` makes in `owner`'s batch; `answer` says where its reply
    /// goes in the output and how it is written (`None` for `noreply`).
    pub(crate) fn queue(
        &mut self,
        router: &Router,
        owner: ShardId,
        now: u64,
        answer: Option<(usize, Form)>,
        build: impl FnOnce(&mut Batch) -> Op,
    ) {
        debug_assert!(!matches!(self.phase, Phase::Answering { .. }));
        if self.batches.len() < router.shard_count() {
            self.batches.resize_with(router.shard_count(), || None);
        }
        let batch = self.batches[owner].get_or_insert_with(Box::default);
        if batch.is_empty() {
            batch.now = now;
            batch.fd = self.fd;
        }
        let op = build(batch);
        let op = batch.push(op);
        if let Some((at, form)) = answer {
            self.pieces.push(Piece {
                at,
                shard: owner,
                op,
                form,
            });
        }
        self.phase = Phase::Queued;
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.phase != Phase::Idle
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.batches
            .iter()
            .flatten()
            .map(|batch| batch.request_bytes())
            .sum()
    }

    /// Sends each core its batch, waits for the outcomes, and writes the replies, local and
    /// remote, in request order into `out` until it reaches `high_water` bytes.
    ///
    /// `out` holds the pass's local replies when the exchange starts; they are moved aside
    /// and copied back between the remote ones. An owner answers a batch in pieces of about
    /// [`crate::batch::REPLY_PIECE_BYTES`], so neither the output nor any batch grows with
    /// the size of what was asked for: on [`Exchanged::More`] the caller writes `out`, empties
    /// it and calls again, and the exchange goes on where it stopped.
    pub(crate) async fn exchange(
        &mut self,
        router: &Router,
        out: &mut Output,
        high_water: usize,
    ) -> Result<Exchanged, Gone> {
        if self.phase == Phase::Queued {
            // The pass's output becomes `local`; `out` continues in the kept empty buffer.
            std::mem::swap(out, &mut self.local);
            out.clear();
            self.phase = Phase::Answering { from: 0, next: 0 };
        }
        loop {
            let Phase::Answering { from, next } = &mut self.phase else {
                return Ok(Exchanged::Done);
            };
            // Write every reply that is here, in order, up to the high-water mark.
            while *next < self.pieces.len() && out.pending() < high_water {
                let piece = &self.pieces[*next];
                let Some(batch) = self.batches.get(piece.shard).and_then(Option::as_deref) else {
                    log::error!("no batch came back from core {}", piece.shard);
                    *next += 1;
                    continue;
                };
                if !batch.is_answered(piece.op) {
                    break;
                }
                out.append_run(&mut self.local, *from, piece.at);
                *from = piece.at;
                encode(out, batch, piece);
                *next += 1;
            }
            if *next == self.pieces.len() && !self.batches.iter().flatten().any(|b| b.has_unrun()) {
                out.append_rest(&mut self.local, *from);
                self.finish();
                return Ok(Exchanged::Done);
            }
            if out.pending() >= high_water {
                return Ok(Exchanged::More);
            }
            let next = *next;
            self.run_unanswered(router, next).await?;
        }
    }

    /// Sends again every batch that has ops not yet run, except those holding replies not
    /// yet written (from `pieces[next..]`): a trip would replace them. The first unwritten
    /// piece's batch always goes, so every call makes progress.
    async fn run_unanswered(&mut self, router: &Router, next: usize) -> Result<(), Gone> {
        // Each batch is decided by its first unwritten piece; the scan ends once every core's
        // is (a bit per core; past 64 cores it reads every piece).
        let cores = self.batches.len();
        let all = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| batch.is_some())
            .fold(0u64, |bits, (shard, _)| {
                bits | 1u64.checked_shl(shard as u32).unwrap_or(0)
            });
        let mut decided = 0u64;
        for piece in &self.pieces[next..] {
            let bit = 1u64.checked_shl(piece.shard as u32).unwrap_or(0);
            if decided & bit != 0 {
                continue;
            }
            decided |= bit;
            let Some(slot) = self.batches.get_mut(piece.shard) else {
                continue;
            };
            if let Some(batch) = slot.take_if(|batch| batch.is_answered(piece.op)) {
                self.parked.push((piece.shard, batch));
            }
            if cores < 64 && decided == all {
                break;
            }
        }
        let result = if self.batches.iter().flatten().any(|batch| batch.has_unrun()) {
            router
                .invoke_batches_await(&mut self.batches, &mut self.tickets)
                .await
        } else {
            // Cannot happen (the first unwritten piece's batch has unrun ops); were it to, the
            // connection closes rather than wait for a reply that no trip would bring.
            log::error!("an exchange has replies to write and nothing to send");
            Err(Gone(router.me()))
        };
        for (shard, batch) in self.parked.drain(..) {
            self.batches[shard] = Some(batch);
        }
        result
    }

    /// Back to idle, keeping buffers of a reasonable size for the next turn.
    fn finish(&mut self) {
        self.pieces.clear();
        for batch in self.batches.iter_mut().flatten() {
            batch.clear();
        }
        self.local.clear();
        self.phase = Phase::Idle;
    }
}

/// Writes the reply to one remote op with the encoder the local path uses.
fn encode(out: &mut Output, batch: &Batch, piece: &Piece) {
    match batch.outcome(piece.op) {
        Some(Outcome::Key(owned)) => {
            let key = batch.key(piece.op);
            let answer = owned.view(key, batch.values());
            form::encode(out, &piece.form, key, answer, batch.now);
        }
        outcome => {
            // The owner runs every op it is sent; a missing answer is a bug, and a reply
            // keeps the client's count of replies right.
            log::error!("op {} came back as {outcome:?}", piece.op);
            form::internal_error(out, &piece.form);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use rampart_store::StoreConfig;

    use super::super::{Session, Stop};
    use super::Form;
    use crate::authz::Identity;
    use crate::config::{Config, ProtocolChoice};
    use crate::mesh::Mesh;
    use crate::output::Output;
    use crate::shard::{Router, Shard, ShardId, shard_for};
    use crate::worker::{Process, Worker};

    const NOW: u64 = 1_800_000_000;

    /// Core 0 of `count`, with no channels: enough to plan, not to exchange.
    fn worker(count: usize) -> Worker {
        let config = Arc::new(Config::default());
        let store = StoreConfig {
            max_bytes: 1 << 20,
            evict: true,
            cas_start: 1,
            cas_stride: count as u64,
            item_size_max: 1 << 20,
            cas_enabled: true,
        };
        let mesh = Rc::new(Mesh::new(0, (0..count).map(|_| None).collect()));
        let router = Router::new(Rc::new(Shard::new(0, store)), count, mesh);
        Worker::new(config, Arc::new(Process::new(count)), router, NOW)
    }

    /// The `n`th key of the form `k<i>` that `shard` of `count` owns.
    fn key(shard: ShardId, count: usize, n: usize) -> String {
        (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| shard_for(k.as_bytes(), count) == shard)
            .nth(n)
            .unwrap_or_default()
    }

    #[test]
    fn a_pipelined_read_makes_one_batch_per_core() {
        let worker = worker(3);
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
        let mut input = String::new();
        for i in 0..8 {
            input += &format!("set {} 0 0 1\r\nx\r\n", key(1, 3, i));
            input += &format!("get {}\r\n", key(2, 3, i));
            input += &format!("get {}\r\n", key(0, 3, i));
            input += &format!("delete {} noreply\r\n", key(1, 3, i));
        }
        input += &format!("get {} {} {}\r\n", key(0, 3, 0), key(1, 3, 0), key(2, 3, 0));
        let mut out = Output::new();
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(progress.stop, Stop::NeedInput);
        assert_eq!(progress.consumed, input.len());
        assert!(session.is_waiting());
        let plan = &session.plan;
        let ops = |shard: usize| plan.batches[shard].as_ref().map(|b| b.len());
        // Nothing for this core: its requests ran inline. One batch each for the others,
        // however many requests the read held.
        assert_eq!((ops(0), ops(1), ops(2)), (None, Some(17), Some(9)));
        // A reply place for each op that answers (deletes are noreply).
        assert_eq!(plan.pieces.len(), 8 + 8 + 2);
        // Only the local replies are written so far: END of each get.
        assert_eq!(out.to_vec(), "END\r\n".repeat(17).as_bytes());
    }

    #[test]
    fn whole_cache_requests_stop_the_pass_unconsumed() {
        let worker = worker(2);
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
        let input = format!(
            "set {} 0 0 1\r\nx\r\nflush_all\r\nversion\r\n",
            key(1, 2, 0)
        );
        let mut out = Output::new();
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(progress.stop, Stop::WholeCache);
        assert_eq!(
            &input.as_bytes()[progress.consumed..],
            b"flush_all\r\nversion\r\n"
        );
        assert!(session.is_waiting());
    }

    #[test]
    fn meta_requests_queue_with_a_reply_place_even_when_quiet() {
        let worker = worker(2);
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
        let (remote, local) = (key(1, 2, 0), key(0, 2, 0));
        // A quiet remote set still gets a place: it answers if it fails.
        let input = format!("ms {remote} 1 q\r\nx\r\nmg {remote} v\r\nmg {local} v\r\nmn\r\n");
        let mut out = Output::new();
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(
            (progress.stop, progress.consumed),
            (Stop::NeedInput, input.len())
        );
        let plan = &session.plan;
        assert_eq!(plan.batches[1].as_ref().map(|b| b.len()), Some(2));
        assert_eq!(plan.pieces.len(), 2);
        assert!(plan.pieces.iter().all(|p| matches!(p.form, Form::Meta(_))));
        assert_eq!(out.to_vec(), b"EN\r\nMN\r\n");
    }

    #[test]
    fn binary_requests_queue_and_local_ones_answer_in_place() {
        let worker = worker(2);
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Auto);
        let packet = |opcode: u8, key: &str| {
            let mut p = vec![0x80, opcode, 0, key.len() as u8, 0, 0, 0, 0];
            p.extend_from_slice(&(key.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0; 12]);
            p.extend_from_slice(key.as_bytes());
            p
        };
        let mut input = packet(0x0d, &key(1, 2, 0)); // getkq, remote
        input.extend(packet(0x0d, &key(0, 2, 0))); // getkq, local miss: nothing
        input.extend(packet(0x0a, "")); // noop
        let mut out = Output::new();
        let progress = session.process(&input, &worker, NOW, usize::MAX, &mut out);
        assert_eq!(
            (progress.stop, progress.consumed),
            (Stop::NeedInput, input.len())
        );
        assert_eq!(session.plan.pieces.len(), 1);
        assert!(matches!(session.plan.pieces[0].form, Form::Binary(_)));
        // Only the noop's response so far, and the connection is binary from now on.
        let out = out.to_vec();
        assert_eq!(out.len(), 24);
        assert_eq!(&out[..2], &[0x81, 0x0a]);
        assert_eq!(
            session.state,
            super::super::ReadState::Reading(super::super::Wire::Binary)
        );
    }
}
