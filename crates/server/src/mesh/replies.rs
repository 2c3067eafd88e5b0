//! Replies in flight to this core: a slot per batch sent, which the dispatcher fills and the
//! waiting connection empties. Slots are reused, so steady traffic does not allocate.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::{Gone, Message, Ticket};

/// Future of one reply, or of the news that its peer stopped serving; dropping it before the
/// reply arrives abandons the slot.
#[derive(Debug)]
pub struct ReplyAwait<'a> {
    replies: &'a Replies,
    ticket: Ticket,
    done: bool,
}

impl<'a> ReplyAwait<'a> {
    pub(super) fn new(replies: &'a Replies, ticket: Ticket) -> Self {
        ReplyAwait {
            replies,
            ticket,
            done: false,
        }
    }
}

impl Future for ReplyAwait<'_> {
    type Output = Result<Message, Gone>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let poll = self.replies.poll_take(self.ticket, cx);
        if poll.is_ready() {
            self.done = true;
        }
        poll
    }
}

impl Drop for ReplyAwait<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.replies.abandon(self.ticket);
        }
    }
}

#[derive(Debug)]
enum Slot {
    Free,
    /// Its batch is away; the waker is the waiting connection's.
    Waiting(Option<Waker>),
    Arrived(Message),
    /// Its batch never reached the peer, which stopped serving.
    Lost(Gone),
    /// Its connection stopped waiting; the batch is dropped when it comes back.
    Abandoned,
}

#[derive(Debug, Default)]
pub(super) struct Replies {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<Ticket>>,
}

impl Replies {
    pub(super) fn reserve(&self) -> Ticket {
        let mut slots = self.slots.borrow_mut();
        let ticket = match self.free.borrow_mut().pop() {
            Some(ticket) => ticket,
            None => {
                slots.push(Slot::Free);
                // Tickets are bounded by connections times cores, far below 2^32.
                Ticket::try_from(slots.len() - 1).unwrap_or(Ticket::MAX)
            }
        };
        slots[ticket as usize] = Slot::Waiting(None);
        ticket
    }

    fn release(&self, slots: &mut [Slot], ticket: Ticket) {
        slots[ticket as usize] = Slot::Free;
        self.free.borrow_mut().push(ticket);
    }

    /// A reply came back: hand it to its waiter.
    pub(super) fn deliver(&self, batch: Message) {
        let ticket = batch.ticket;
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(ticket as usize) else {
            log::error!("reply for unknown ticket {ticket}");
            return;
        };
        match std::mem::replace(slot, Slot::Free) {
            Slot::Waiting(waker) => {
                *slot = Slot::Arrived(batch);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Slot::Abandoned => self.release(&mut slots, ticket),
            other => {
                log::error!("reply for ticket {ticket} in state {other:?}");
                *slot = other;
            }
        }
    }

    fn poll_take(&self, ticket: Ticket, cx: &mut Context<'_>) -> Poll<Result<Message, Gone>> {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[ticket as usize];
        match std::mem::replace(slot, Slot::Free) {
            Slot::Arrived(batch) => {
                self.release(&mut slots, ticket);
                Poll::Ready(Ok(batch))
            }
            Slot::Lost(gone) => {
                self.release(&mut slots, ticket);
                Poll::Ready(Err(gone))
            }
            Slot::Waiting(waker) => {
                let waker = match waker {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *slot = Slot::Waiting(Some(waker));
                Poll::Pending
            }
            other => {
                // Free or Abandoned: polled after completion or abandonment, a bug.
                *slot = other;
                Poll::Pending
            }
        }
    }

    /// The batch could not be sent: its waiter hears `gone`.
    pub(super) fn fail(&self, ticket: Ticket, gone: Gone) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(ticket as usize) else {
            return;
        };
        match std::mem::replace(slot, Slot::Lost(gone)) {
            Slot::Waiting(waker) => {
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Slot::Abandoned => self.release(&mut slots, ticket),
            other => *slot = other,
        }
    }

    /// Nobody will collect this reply any more.
    pub(super) fn abandon(&self, ticket: Ticket) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(ticket as usize) else {
            return;
        };
        match std::mem::replace(slot, Slot::Abandoned) {
            // Still away: the dispatcher frees the slot when it comes back.
            Slot::Waiting(_) => {}
            // Back already, or lost: dropped with the slot, which is reusable now.
            Slot::Arrived(_) | Slot::Lost(_) => self.release(&mut slots, ticket),
            // Not in flight (collected, or abandoned before): nothing to do.
            other => *slot = other,
        }
    }
}
