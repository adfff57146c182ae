//! Argon2 work, for password and PIN hashes: slow on purpose, so it runs on
//! blocking threads, at most one per core. More at once would only queue on
//! the cores, each holding argon2's 19 MiB, and a flood of sign-ins could
//! take a node's memory. And checks of one secret take turns, so the check
//! after a right guess sees it (a PIN verified is remembered) and the one
//! after a wrong guess sees its count.

use std::hash::{BuildHasher, Hash, RandomState};

use tokio::sync::{Mutex, MutexGuard, Semaphore};

/// Turns are kept per stripe of secrets, so they take bounded memory; two
/// secrets share a stripe rarely, and then only wait for each other.
const STRIPES: usize = 256;

/// The gate every argon2 hash and verification of a node passes.
pub struct Hashing {
    permits: Semaphore,
    turns: Box<[Mutex<()>]>,
    stripe_of: RandomState,
}

impl Default for Hashing {
    fn default() -> Hashing {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Hashing {
            permits: Semaphore::new(cores),
            turns: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_of: RandomState::new(),
        }
    }
}

impl Hashing {
    /// Waits until no other check of the secret `key` runs on this node.
    pub async fn turn(&self, key: impl Hash) -> MutexGuard<'_, ()> {
        let stripe = self.stripe_of.hash_one(key) as usize % STRIPES;
        self.turns[stripe].lock().await
    }

    /// Runs `work` on a blocking thread once a core is free for it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_run_at_once_than_there_are_cores() {
        let hashing = Arc::new(Hashing::default());
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..cores * 4)
            .map(|_| {
                let (hashing, running, most) = (hashing.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    hashing
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=cores).contains(&most),
            "{most} ran at once on {cores} cores"
        );
    }

    #[tokio::test]
    async fn checks_of_one_secret_take_turns() {
        let hashing = Hashing::default();
        let first = hashing.turn(("pin", 7)).await;
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            hashing.turn(("pin", 7)),
        )
        .await;
        assert!(waiting.is_err(), "the same secret waits for its turn");
        drop(first);
        drop(hashing.turn(("pin", 7)).await);
    }
}
