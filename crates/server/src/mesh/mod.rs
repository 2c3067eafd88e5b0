//! The cross-core transport: how a batch reaches the core that owns its keys and how its
//! outcomes come back.
//!
//! Two full meshes of glommio shared channels (bounded single-producer single-consumer rings,
//! one per ordered pair of cores): one carries requests, the other replies. A connection
//! posts its batch for a peer into this core's outbox for that peer and waits for the reply;
//! one sender task per peer sends everything posted in an executor turn as one message (the
//! batches chained through [`Batch`]'s `next`), so connections of one core that meet the same
//! owner in the same turn share a crossing, and its wake-up. Each executor runs one
//! shard-service task per peer, which takes messages off the request channel, runs their
//! batches on its shard and sends them back on the reply channel, and one dispatcher per peer,
//! which takes replies off the reply channel and hands each batch to the connection task
//! waiting for it (a slot in [`Replies`] and a waker). A dispatcher never waits for anything
//! but its channel, so the reply channels always drain; a shard service waits only for room
//! on a reply channel; a sender waits only for room on a request channel; a connection waits
//! only for its replies. No cycle of waits exists, so two cores can never deadlock each
//! other, and no executor ever blocks: every wait is an `await` that lets the core's other
//! tasks run.
//!
//! The channels are built on the main thread and each executor is handed its own ends
//! ([`Ends`]), indexed by core: which end talks to which core is explicit rather than derived
//! from glommio's executor ids, as `MeshBuilder` would. [`crate::runtime`] builds them and
//! connects each executor's before that executor's own code runs.

mod replies;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{GlommioError, Latency, ResourceType, Shares};

use crate::batch::Batch;
use crate::shard::{Router, Shard, ShardId};
use crate::worker::Worker;

use self::replies::Replies;
pub use self::replies::ReplyAwait;

/// What a channel carries: one batch, with the turn's other batches for the same owner
/// chained behind it. Boxed so that a channel slot is one pointer, and so that the allocation
/// travels back and forth with its buffers instead of being made per message.
pub type Message = Box<Batch>;

/// Slots of each channel: messages in flight from one core to one peer before its sender
/// waits for room. A connection has at most one batch in flight per peer, so what waits
/// behind a full channel is bounded by the connections.
pub const CHANNEL_SLOTS: usize = 256;

/// The shard service's CPU shares against the connections' (glommio's default queue has
/// 1000): when both are busy, peers' batches get two thirds of the core.
const SHARD_SERVICE_SHARES: usize = 2000;
/// The latency the shard service asks glommio for while it has batches waiting.
const SHARD_SERVICE_LATENCY: Duration = Duration::from_micros(500);

/// How often an executor looks whether its peers have connected their ends, at start-up.
const CONNECT_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A peer core stopped serving (only at the very end of a shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("core {0} is no longer serving")]
pub struct Gone(pub ShardId);

/// One executor's ends of both meshes, before they are connected; built on the main thread
/// and moved into the executor. Index `p` of each list talks to core `p`; an executor's own
/// index is empty.
#[derive(Debug)]
pub(crate) struct Ends {
    core: ShardId,
    requests_out: Vec<Option<SharedSender<Message>>>,
    requests_in: Vec<Option<SharedReceiver<Message>>>,
    replies_out: Vec<Option<SharedSender<Message>>>,
    replies_in: Vec<Option<SharedReceiver<Message>>>,
}

/// Builds both meshes for `cores` executors.
pub(crate) fn build(cores: usize) -> Vec<Ends> {
    let mut ends: Vec<Ends> = (0..cores)
        .map(|core| Ends {
            core,
            requests_out: (0..cores).map(|_| None).collect(),
            requests_in: (0..cores).map(|_| None).collect(),
            replies_out: (0..cores).map(|_| None).collect(),
            replies_in: (0..cores).map(|_| None).collect(),
        })
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&to| to != from) {
            let (tx, rx) = shared_channel::new_bounded(CHANNEL_SLOTS);
            ends[from].requests_out[to] = Some(tx);
            ends[to].requests_in[from] = Some(rx);
            let (tx, rx) = shared_channel::new_bounded(CHANNEL_SLOTS);
            ends[from].replies_out[to] = Some(tx);
            ends[to].replies_in[from] = Some(rx);
        }
    }
    ends
}

/// Connected ends, inside the executor: the request senders become the core's [`Mesh`], the
/// rest its [`ServiceEnds`] ([`Connected::into_router`]).
#[derive(Debug)]
pub struct Connected {
    core: ShardId,
    requests_out: Vec<Option<ConnectedSender<Message>>>,
    service: ServiceEnds,
}

impl Connected {
    /// The router of the executor whose shard is `shard`: through this core's [`Mesh`] to its
    /// peers, or straight to `shard` when it is the only one. The [`ServiceEnds`] are for
    /// [`spawn_services`], once the worker that owns the router exists.
    pub fn into_router(self, shard: Rc<Shard>) -> (Router, ServiceEnds) {
        let cores = self.requests_out.len();
        let router = if cores > 1 {
            Router::new(
                shard,
                cores,
                Rc::new(Mesh::new(self.core, self.requests_out)),
            )
        } else {
            Router::single(shard)
        };
        (router, self.service)
    }
}

/// The ends the shard service and the reply dispatchers use.
#[derive(Debug)]
pub struct ServiceEnds {
    requests_in: Vec<(ShardId, ConnectedReceiver<Message>)>,
    replies_out: Vec<Option<ConnectedSender<Message>>>,
    replies_in: Vec<(ShardId, ConnectedReceiver<Message>)>,
}

impl Ends {
    /// Connects every end. Each connection completes only once the peer has connected its
    /// side, so all of them are started before any is awaited (awaiting one at a time would
    /// deadlock two executors each waiting on an end the other has not reached yet).
    pub(crate) async fn connect(self) -> Connected {
        // glommio notices that a peer has connected only when its reactor looks at the shared
        // channels, which an idle executor does not do until something wakes it: a ticking
        // timer keeps it looking until every end is connected.
        let ticker = async {
            loop {
                glommio::timer::sleep(CONNECT_POLL_INTERVAL).await;
            }
        };
        futures_lite::future::or(self.connect_all(), ticker).await
    }

    async fn connect_all(self) -> Connected {
        let senders = |list: Vec<Option<SharedSender<Message>>>| {
            list.into_iter()
                .map(|end| end.map(|end| glommio::spawn_local(end.connect())))
                .collect::<Vec<_>>()
        };
        let receivers = |list: Vec<Option<SharedReceiver<Message>>>| {
            list.into_iter()
                .enumerate()
                .filter_map(|(peer, end)| {
                    end.map(|end| (peer, glommio::spawn_local(end.connect())))
                })
                .collect::<Vec<_>>()
        };
        let requests_out = senders(self.requests_out);
        let replies_out = senders(self.replies_out);
        let requests_in = receivers(self.requests_in);
        let replies_in = receivers(self.replies_in);
        let mut connected = Connected {
            core: self.core,
            requests_out: Vec::new(),
            service: ServiceEnds {
                requests_in: Vec::new(),
                replies_out: Vec::new(),
                replies_in: Vec::new(),
            },
        };
        for task in requests_out {
            connected.requests_out.push(match task {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        let service = &mut connected.service;
        for task in replies_out {
            service.replies_out.push(match task {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        for (peer, task) in requests_in {
            service.requests_in.push((peer, task.await));
        }
        for (peer, task) in replies_in {
            service.replies_in.push((peer, task.await));
        }
        connected
    }
}

/// Starts the tasks that serve peers' batches on this core's shard and hand peers' replies to
/// this core's connections. They run in a task queue of their own with more shares than the
/// connections' and a latency requirement, so that a busy core's connections cannot starve the
/// cores waiting on its shard.
pub fn spawn_services(worker: &Rc<Worker>, ends: ServiceEnds) {
    let Some(mesh) = worker.router().mesh() else {
        return;
    };
    let queue = glommio::executor().create_task_queue(
        Shares::Static(SHARD_SERVICE_SHARES),
        Latency::Matters(SHARD_SERVICE_LATENCY),
        "shard-service",
    );
    let ServiceEnds {
        requests_in,
        mut replies_out,
        replies_in,
    } = ends;
    for (peer, requests) in requests_in {
        let Some(replies) = replies_out.get_mut(peer).and_then(Option::take) else {
            log::error!("no reply channel to core {peer}");
            continue;
        };
        let service = serve_peer(requests, replies, Rc::clone(worker));
        if let Err(err) = glommio::spawn_local_into(service, queue).map(|task| task.detach()) {
            log::error!("cannot start the shard service for core {peer}: {err}");
        }
    }
    for (peer, replies) in replies_in {
        let dispatcher = dispatch_replies(replies, Rc::clone(mesh));
        if let Err(err) = glommio::spawn_local_into(dispatcher, queue).map(|task| task.detach()) {
            log::error!("cannot start the reply dispatcher for core {peer}: {err}");
        }
    }
    // The senders run in the connections' queue (the caller's), behind the connection tasks
    // that the same wake-up made runnable, so a turn's posts leave together.
    for peer in (0..mesh.requests.len()).filter(|&peer| mesh.requests[peer].is_some()) {
        glommio::spawn_local(send_posted(Rc::clone(mesh), peer)).detach();
    }
}

/// Counters of this core's traffic with its peers.
#[derive(Debug, Default)]
pub struct MeshCounters {
    /// Messages this core sent to peers (each one turn's batches for one peer).
    pub batches_sent: Cell<u64>,
    /// Messages this core ran for peers' connections, and the operations in them.
    pub batches_served: Cell<u64>,
    pub ops_served: Cell<u64>,
}

impl MeshCounters {
    pub fn reset(&self) {
        self.batches_sent.set(0);
        self.batches_served.set(0);
        self.ops_served.set(0);
    }
}

/// This core's side of the meshes, shared by its connection tasks, senders and dispatchers.
#[derive(Debug)]
pub struct Mesh {
    core: ShardId,
    /// Request channels to each peer (none to this core).
    requests: Vec<Option<ConnectedSender<Message>>>,
    /// Batches posted for each peer and not sent yet.
    outboxes: Vec<Outbox>,
    replies: Replies,
    pub counters: MeshCounters,
}

/// The batches posted for one peer since its sender last took them, chained, and the sender's
/// waker while it waits for some.
#[derive(Debug, Default)]
struct Outbox {
    posted: RefCell<Option<Message>>,
    sender: RefCell<Option<Waker>>,
}

/// A reply being waited for: the slot the dispatcher will fill.
pub type Ticket = u32;

impl Mesh {
    pub fn new(core: ShardId, requests: Vec<Option<ConnectedSender<Message>>>) -> Mesh {
        let outboxes = requests.iter().map(|_| Outbox::default()).collect();
        Mesh {
            core,
            requests,
            outboxes,
            replies: Replies::default(),
            counters: MeshCounters::default(),
        }
    }

    /// Posts `batch` for core `to`: it leaves with the other batches posted for `to` in this
    /// executor turn, once the tasks runnable now have had their turn; the reply is collected
    /// with [`Mesh::reply_await`], and says [`Gone`] if the peer stopped serving.
    pub fn post(&self, to: ShardId, mut batch: Message) -> Result<Ticket, Gone> {
        let (Some(Some(_)), Some(outbox)) = (self.requests.get(to), self.outboxes.get(to)) else {
            return Err(Gone(to));
        };
        let ticket = self.replies.reserve();
        batch.origin = self.core;
        batch.ticket = ticket;
        let mut posted = outbox.posted.borrow_mut();
        batch.next = posted.take();
        let first = batch.next.is_none();
        *posted = Some(batch);
        drop(posted);
        if first && let Some(sender) = outbox.sender.borrow_mut().take() {
            sender.wake();
        }
        Ok(ticket)
    }

    /// The batches posted for `to`, once there are some.
    async fn posted(&self, to: ShardId) -> Message {
        let outbox = &self.outboxes[to];
        std::future::poll_fn(|cx| match outbox.posted.borrow_mut().take() {
            Some(posted) => Poll::Ready(posted),
            None => {
                let mut sender = outbox.sender.borrow_mut();
                if !sender.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *sender = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for the reply to a batch sent with [`Mesh::post`].
    pub fn reply_await(&self, ticket: Ticket) -> ReplyAwait<'_> {
        ReplyAwait::new(&self.replies, ticket)
    }

    /// Gives up on a reply (the batch comes back and is dropped).
    pub fn abandon(&self, ticket: Ticket) {
        self.replies.abandon(ticket);
    }
}

/// Sends what this core's connections post for peer `to`, one message per executor turn
/// (or per wait for room on the channel, when the peer is slow), for as long as it serves.
async fn send_posted(mesh: Rc<Mesh>, to: ShardId) {
    let Some(Some(channel)) = mesh.requests.get(to) else {
        return;
    };
    loop {
        let message = mesh.posted(to).await;
        match channel.send(message).await {
            Ok(()) => {
                let sent = &mesh.counters.batches_sent;
                sent.set(sent.get() + 1);
            }
            // Only at the end of a shutdown: the channel hands the message back, and every
            // connection waiting on it hears of it, now and for whatever is posted later.
            Err(GlommioError::Closed(ResourceType::Channel(message))) => {
                let mut next = Some(message);
                while let Some(mut batch) = next {
                    next = batch.next.take();
                    mesh.replies.fail(batch.ticket, Gone(to));
                }
            }
            // `send` fails only as closed, with the item (glommio's `try_send`).
            Err(err) => log::error!("cannot send to core {to}: {err}"),
        }
    }
}

/// Serves one peer's messages on this core's shard, for as long as the peer sends them.
async fn serve_peer(
    requests: ConnectedReceiver<Message>,
    replies: ConnectedSender<Message>,
    worker: Rc<Worker>,
) {
    while let Some(message) = requests.recv().await {
        // Runs the chain's batches, re-chaining them (in reverse: each is answered on its
        // own) for the way back.
        let (mut next, mut answered, mut ran) = (Some(message), None, 0);
        while let Some(mut batch) = next {
            next = batch.next.take();
            ran += batch.run(&*worker);
            batch.next = answered.take();
            answered = Some(batch);
            if next.is_some() {
                // Many connections' batches must not keep this core's own from running.
                glommio::yield_if_needed().await;
            }
        }
        if let Some(mesh) = worker.router().mesh()
            && ran > 0
        {
            let counters = &mesh.counters;
            counters
                .batches_served
                .set(counters.batches_served.get() + 1);
            counters
                .ops_served
                .set(counters.ops_served.get() + ran as u64);
        }
        let Some(answered) = answered else { continue };
        if replies.send(answered).await.is_err() {
            break;
        }
        // A long queue of messages must not keep this core's connections from running.
        glommio::yield_if_needed().await;
    }
}

/// Hands replies from one peer to the connections waiting for them, batch by batch. Never
/// waits for anything but the channel, so the peer's shard service can always send.
async fn dispatch_replies(replies: ConnectedReceiver<Message>, mesh: Rc<Mesh>) {
    while let Some(message) = replies.recv().await {
        let mut next = Some(message);
        while let Some(mut batch) = next {
            next = batch.next.take();
            mesh.replies.deliver(batch);
        }
    }
}
