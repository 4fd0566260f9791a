//! A byte budget shared by concurrent work (the request bodies being read). A charge is given
//! back when it is dropped, so a request cancelled half-way (its client gone) returns its share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now, over every holder.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// An empty charge, grown with [`Charge::grow_to`] as the work needs more.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }
}

/// A share of a [`ByteBudget`], held until dropped.
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Charge {
    /// Grows this charge to `bytes` in all; false, and nothing taken, if the budget cannot give
    /// that much now.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        if !self.budget.take(more) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_are_given_back_when_dropped() {
        let budget = ByteBudget::new(100);
        let mut a = budget.charge();
        assert!(a.grow_to(60));
        let mut b = budget.charge();
        assert!(!b.grow_to(41), "60 + 41 is over 100");
        assert_eq!(b.bytes(), 0, "a refused charge takes nothing");
        assert!(b.grow_to(40));
        assert!(b.grow_to(40), "growing to what is held takes nothing more");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow_to(100));
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
