//! `rampart-floor --io-uring`: the floor again, with the fewest system calls io_uring allows,
//! to tell whether a server built that way could spend less per request than the epoll floor.
//!
//! One thread and one ring (`IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN`): a multishot
//! accept; per connection one multishot `recv` that picks its buffers from a ring of provided
//! buffers, so that a request's bytes arrive in its completion with no `recvfrom`; and each
//! reply as a `send` SQE that the next `io_uring_enter` submits while it waits. A request
//! served between two sleeps therefore costs one system call, against the epoll floor's three
//! (`epoll_wait`, `recvfrom`, `sendto`). The store and the parser are the epoll floor's
//! ([`FloorStore`]).
//!
//! Plaintext only, and Linux 6.1 or later (multishot `recv` 6.0, `DEFER_TASKRUN` 6.1): it is a
//! measuring instrument, and [`UringFloor::bind`] says so when the kernel refuses it.
//!
//! The `unsafe` here is io_uring's: every SQE names memory the kernel reads or writes until its
//! completion. Each one's invariant is stated where it is pushed.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{FloorConfig, FloorError, FloorStore, MAX_INPUT_BYTES, write_port_file};

/// Provided buffers, each `BUFFER_BYTES` (a power of two, as the ring's index mask needs).
const BUFFERS: u16 = 256;
const BUFFER_BYTES: usize = 16 * 1024;
/// The buffer group the receives pick from.
const GROUP: u16 = 0;
const RING_ENTRIES: u32 = 1024;
/// `user_data`: the operation in the top bits, the connection's slot and generation below.
const ACCEPT: u64 = 1 << 62;
const RECV: u64 = 2 << 62;
const SEND: u64 = 3 << 62;
const KIND: u64 = 3 << 62;

/// The io_uring floor, bound; [`UringFloor::run`] serves until the process ends, on the
/// thread that bound it (a single-issuer ring belongs to the thread that made it; the raw
/// pointer of the buffer ring keeps the type on that thread). Its fields drop in order: the
/// ring before the buffers it was given.
pub struct UringFloor {
    listener: TcpListener,
    ring: IoUring,
    buffers: ProvidedBuffers,
    conns: Vec<Slot>,
    free: Vec<u32>,
    store: FloorStore,
}

impl std::fmt::Debug for UringFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFloor")
            .field("listener", &self.listener)
            .field("connections", &(self.conns.len() - self.free.len()))
            .finish_non_exhaustive()
    }
}

/// A connection's place; `generation` tells a completion for an earlier occupant.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Conn {
    fd: RawFd,
    /// Bytes of a request still arriving (most reads leave none).
    partial: Vec<u8>,
    /// Replies produced while a send is in flight.
    out: Vec<u8>,
    /// The send in flight (or the next): `sending[sent..]` is what the kernel still holds.
    sending: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
    /// The receive has ended (the peer left or the connection broke); freed once no send
    /// is in flight.
    ended: bool,
}

impl UringFloor {
    /// Listens, sets the ring up and writes the port file; fails on a kernel without what the
    /// ring needs, and for a TLS config (plaintext only).
    pub fn bind(config: &FloorConfig) -> Result<UringFloor, FloorError> {
        if config.tls.is_some() {
            return Err(FloorError::Poll(io::Error::new(
                io::ErrorKind::Unsupported,
                "the io_uring floor serves plaintext only",
            )));
        }
        let listen = config.listen;
        let listener = TcpListener::bind(listen).map_err(|source| FloorError::Listen {
            addr: listen,
            source,
        })?;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)
            .map_err(uring_error)?;
        let buffers = ProvidedBuffers::register(&ring)?;
        let mut floor = UringFloor {
            listener,
            ring,
            buffers,
            conns: Vec::new(),
            free: Vec::new(),
            store: FloorStore::default(),
        };
        floor.push(
            opcode::AcceptMulti::new(types::Fd(floor.listener.as_raw_fd())).build(),
            ACCEPT,
        )?;
        write_port_file(config, floor.port()?)?;
        Ok(floor)
    }

    pub fn port(&self) -> Result<u16, FloorError> {
        let addr = self.listener.local_addr().map_err(FloorError::Poll)?;
        Ok(addr.port())
    }

    /// Serves until the ring fails.
    pub fn run(mut self) -> Result<(), FloorError> {
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize);
        let mut touched: Vec<u32> = Vec::new();
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(FloorError::Poll(e)),
            }
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for (user_data, result, flags) in completions.drain(..) {
                match user_data & KIND {
                    ACCEPT => self.accepted(result, flags)?,
                    RECV => {
                        if let Some(index) = self.received(user_data, result, flags)? {
                            touched.push(index);
                        }
                    }
                    _ => {
                        if let Some(index) = self.send_done(user_data, result) {
                            touched.push(index);
                        }
                    }
                }
            }
            self.buffers.publish();
            for index in touched.drain(..) {
                self.flush(index)?;
            }
        }
    }

    fn accepted(&mut self, result: i32, flags: u32) -> Result<(), FloorError> {
        if result >= 0 {
            let fd = result;
            let _ = set_nodelay(fd);
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(Slot::default());
                (self.conns.len() - 1) as u32
            });
            let slot = &mut self.conns[index as usize];
            slot.conn = Some(Conn {
                fd,
                partial: Vec::new(),
                out: Vec::new(),
                sending: Vec::new(),
                sent: 0,
                send_in_flight: false,
                ended: false,
            });
            let tag = tag(index, slot.generation);
            self.push(recv(fd), RECV | tag)?;
        }
        // Out of descriptors, or the multishot accept ended: arm it again.
        if !cqueue::more(flags) {
            self.push(
                opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd())).build(),
                ACCEPT,
            )?;
        }
        Ok(())
    }

    /// Serves what a receive brought; the slot, when it has replies to send.
    fn received(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
    ) -> Result<Option<u32>, FloorError> {
        let buffer = cqueue::buffer_select(flags);
        let Some(index) = self.live(user_data) else {
            if let Some(id) = buffer {
                self.buffers.give_back(id);
            }
            return Ok(None);
        };
        let conn = self.conns[index as usize].conn.as_mut().ok_or_else(gone)?;
        if let (Some(id), true) = (buffer, result > 0) {
            let data = self.buffers.get(id, result as usize);
            if conn.partial.is_empty() {
                let used = self.store.answer(data, &mut conn.out);
                conn.partial.extend_from_slice(&data[used..]);
            } else {
                conn.partial.extend_from_slice(data);
                let used = self.store.answer(&conn.partial, &mut conn.out);
                conn.partial.drain(..used);
            }
            self.buffers.give_back(id);
            if conn.partial.len() > MAX_INPUT_BYTES {
                // A broken client: the receive ends with the shutdown, and the slot with it.
                // SAFETY: `fd` is this connection's, open until the slot is freed.
                unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
            }
        } else if let Some(id) = buffer {
            self.buffers.give_back(id);
        }
        let more = cqueue::more(flags);
        if result == 0 || (result < 0 && result != -libc::ENOBUFS) {
            // The peer left or the socket failed: this was the receive's last completion.
            if !more {
                conn.ended = true;
            }
        } else if !more {
            // Out of buffers (they are back now) or the kernel ended it: arm it again.
            let (fd, generation) = (conn.fd, self.conns[index as usize].generation);
            self.push(recv(fd), RECV | tag(index, generation))?;
        }
        Ok(Some(index))
    }

    fn send_done(&mut self, user_data: u64, result: i32) -> Option<u32> {
        let index = self.live(user_data)?;
        let conn = self.conns[index as usize].conn.as_mut()?;
        conn.send_in_flight = false;
        if result > 0 {
            conn.sent += result as usize;
        } else {
            // The socket failed; the receive ends too, and frees the slot with this one.
            conn.sending.clear();
            conn.out.clear();
            conn.sent = 0;
        }
        Some(index)
    }

    /// Sends what the connection has, or frees it once it has ended with nothing in flight.
    fn flush(&mut self, index: u32) -> Result<(), FloorError> {
        let slot = &mut self.conns[index as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return Ok(());
        };
        if conn.send_in_flight {
            return Ok(());
        }
        if conn.ended {
            // SAFETY: no operation names the descriptor any more: the receive has ended and
            // no send is in flight.
            unsafe { libc::close(conn.fd) };
            slot.conn = None;
            slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
            self.free.push(index);
            return Ok(());
        }
        if conn.sent == conn.sending.len() {
            conn.sending.clear();
            conn.sent = 0;
            std::mem::swap(&mut conn.sending, &mut conn.out);
        }
        if conn.sent < conn.sending.len() {
            let rest = &conn.sending[conn.sent..];
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            let sqe = opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), len).build();
            conn.send_in_flight = true;
            let tag = tag(index, slot.generation);
            // SAFETY (in `push`): `sending` is neither touched nor dropped while the send is
            // in flight: `out` takes new replies, and the slot is not freed before its
            // completion.
            self.push(sqe, SEND | tag)?;
        }
        Ok(())
    }

    /// The slot a completion is for, unless it belongs to an earlier occupant.
    fn live(&self, user_data: u64) -> Option<u32> {
        let index = (user_data & 0xffff_ffff) as u32;
        let generation = ((user_data >> 32) as u32) & GENERATION_MASK;
        let slot = self.conns.get(index as usize)?;
        (slot.generation == generation && slot.conn.is_some()).then_some(index)
    }

    fn push(&mut self, sqe: squeue::Entry, user_data: u64) -> Result<(), FloorError> {
        let sqe = sqe.user_data(user_data);
        loop {
            // SAFETY: what the SQE names outlives it: the listener and the connections'
            // descriptors stay open until their operations complete, the buffers are the
            // registered group's, and a send's bytes are held as `flush` says.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit().map_err(FloorError::Poll)?;
        }
    }
}

/// Generations fit in the 30 bits between the slot and the operation.
const GENERATION_MASK: u32 = (1 << 30) - 1;

fn tag(index: u32, generation: u32) -> u64 {
    (u64::from(generation & GENERATION_MASK) << 32) | u64::from(index)
}

fn recv(fd: RawFd) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP).build()
}

fn gone() -> FloorError {
    FloorError::Poll(io::Error::other("a live slot without its connection"))
}

fn uring_error(e: io::Error) -> FloorError {
    FloorError::Poll(io::Error::new(
        e.kind(),
        format!("io_uring (the io_uring floor needs Linux 6.1 or later): {e}"),
    ))
}

fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A ring of provided buffers (`IORING_REGISTER_PBUF_RING`): the kernel takes a buffer from
/// its head for each receive; the floor gives each back at its tail once served.
#[derive(Debug)]
struct ProvidedBuffers {
    /// `BUFFERS` entries of `struct io_uring_buf` (16 bytes), page-aligned as the kernel
    /// requires; the tail is the `u16` at byte 14 of the first entry.
    ring: *mut u8,
    ring_bytes: usize,
    memory: Box<[u8]>,
    tail: u16,
}

impl ProvidedBuffers {
    fn register(uring: &IoUring) -> Result<ProvidedBuffers, FloorError> {
        let ring_bytes = usize::from(BUFFERS) * 16;
        // SAFETY: an anonymous private mapping; checked below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(FloorError::Poll(io::Error::last_os_error()));
        }
        let mut buffers = ProvidedBuffers {
            ring: ring.cast(),
            ring_bytes,
            memory: vec![0; usize::from(BUFFERS) * BUFFER_BYTES].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: `ring` is page-aligned, `BUFFERS` entries long, and lives as long as the
        // io_uring it is registered with (both are dropped together with the floor).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, BUFFERS, GROUP, 0)
        }
        .map_err(uring_error)?;
        for id in 0..BUFFERS {
            buffers.give_back(id);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Buffer `id`'s first `len` bytes, as a receive filled them.
    fn get(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * BUFFER_BYTES;
        &self.memory[start..start + len.min(BUFFER_BYTES)]
    }

    /// Puts buffer `id` back at the tail; the kernel sees it at the next [`Self::publish`].
    fn give_back(&mut self, id: u16) {
        let entry = usize::from(self.tail & (BUFFERS - 1)) * 16;
        let addr = self.memory[usize::from(id) * BUFFER_BYTES..].as_ptr() as u64;
        // SAFETY: `entry + 16 <= ring_bytes`; the kernel reads entries only below the
        // published tail, and this one is at or above it.
        unsafe {
            let at = self.ring.add(entry);
            at.cast::<u64>().write(addr);
            at.add(8).cast::<u32>().write(BUFFER_BYTES as u32);
            at.add(12).cast::<u16>().write(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see every buffer given back.
    fn publish(&self) {
        // SAFETY: byte 14 is the ring's tail, a naturally aligned u16 the kernel reads
        // atomically; the release orders the entries' writes before it.
        unsafe { (*self.ring.add(14).cast::<AtomicU16>()).store(self.tail, Ordering::Release) };
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `register`; the floor's ring is dropped first (field
        // order), so the kernel no longer uses it.
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}
