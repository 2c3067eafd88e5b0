//! A value replaced whole by reloads, with a generation that connections compare once per
//! request or turn: what the credential store (`-Y`, `-S`) and the access policy share.
//!
//! The value and its generation change together under the lock; the generation is mirrored
//! in an atomic so that the common question ("has it changed since I looked?") costs one load
//! and no lock traffic between cores. A reader that sees the mirror before it moves sees the
//! change at its next look.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Versioned<T> {
    current: RwLock<(u64, Arc<T>)>,
    generation: AtomicU64,
}

impl<T> Versioned<T> {
    /// `value` at generation 0.
    pub fn new(value: T) -> Versioned<T> {
        Versioned {
            current: RwLock::new((0, Arc::new(value))),
            generation: AtomicU64::new(0),
        }
    }

    /// The value and its generation, as one consistent pair.
    pub fn snapshot(&self) -> (u64, Arc<T>) {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (current.0, Arc::clone(&current.1))
    }

    /// The current generation (one atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the value; returns the new generation.
    pub fn replace(&self, value: T) -> u64 {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = current.0 + 1;
        *current = (generation, Arc::new(value));
        self.generation.store(generation, Ordering::Release);
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_moves_the_generation_with_the_value() {
        let versioned = Versioned::new("first");
        assert_eq!(versioned.generation(), 0);
        assert_eq!(versioned.replace("second"), 1);
        let (generation, value) = versioned.snapshot();
        assert_eq!((generation, *value), (1, "second"));
        assert_eq!(versioned.generation(), 1);
    }
}
