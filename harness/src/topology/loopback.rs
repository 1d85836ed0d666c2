//! Loopback address blocks for scenarios that run side by side: each open
//! scenario gets its own `127.0.K.0/24` for its replicas (127.0.K.2, .3, …),
//! so a replica that goes down and comes back on its address (the `down`
//! fault, a restart) can never find it taken by another scenario's replica.
//! Block 0 (127.0.0.2, …) is the one a single scenario at a time always gets.

use super::bench::Teardown;
use futures::future::BoxFuture;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

/// Blocks in use, shared by every scenario of a run.
#[derive(Debug, Default, Clone)]
pub struct LoopbackBlocks {
    used: Arc<Mutex<Vec<bool>>>,
}

/// One scenario's block, given back when dropped.
#[derive(Debug)]
pub struct LoopbackBlock {
    index: u8,
    used: Arc<Mutex<Vec<bool>>>,
}

/// Third octets a run hands out: 127.0.0.x to 127.0.254.x.
const BLOCKS: usize = 255;

impl LoopbackBlocks {
    /// The lowest free block, or `None` when all are taken (more scenarios
    /// open at once than there are blocks).
    pub fn claim(&self) -> Option<LoopbackBlock> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() < BLOCKS {
            used.resize(BLOCKS, false);
        }
        let index = used.iter().position(|u| !u)?;
        used[index] = true;
        Some(LoopbackBlock {
            index: u8::try_from(index).ok()?,
            used: self.used.clone(),
        })
    }
}

impl LoopbackBlock {
    /// The first replica's address: 127.0.K.2 (the next ones count up).
    pub fn base_address(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.index, 2))
    }
}

impl Drop for LoopbackBlock {
    fn drop(&mut self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = used.get_mut(usize::from(self.index)) {
            *u = false;
        }
    }
}

/// Given back once the scenario's replicas are shut down.
impl Teardown for LoopbackBlock {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(self) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_distinct_while_held_and_reused_after() {
        let blocks = LoopbackBlocks::default();
        let a = blocks.claim().expect("a block");
        let b = blocks.claim().expect("a block");
        assert_eq!(a.base_address().to_string(), "127.0.0.2");
        assert_eq!(b.base_address().to_string(), "127.0.1.2");
        drop(a);
        let c = blocks.claim().expect("a block");
        assert_eq!(c.base_address().to_string(), "127.0.0.2");
        let held: Vec<_> = (0..BLOCKS - 2).map(|_| blocks.claim()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(blocks.claim().is_none(), "all 255 blocks are taken");
    }
}
