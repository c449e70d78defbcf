//! Group commit: every write of a `SqlStore` goes to one task, which runs
//! the writes waiting for it together in one transaction.
//!
//! A commit is the expensive part of a small write (SQLite appends its pages
//! to the WAL, PostgreSQL flushes its log), and on SQLite every statement
//! outside a transaction is a commit of its own. Under load — a dispatcher
//! settling a batch while producers enqueue and phones register — the
//! writes that queued up while one group committed share the next commit,
//! so the cost per write falls as the load rises (issue 8). At rest a write
//! waits for nothing: a group of one commits at once.
//!
//! Each write stays atomic on its own. If a group fails, its writes are run
//! again one transaction each, so one bad write fails only its own caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use herald_core::StoreError;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::map_err;

/// What a write's statements return, borrowing its input and the connection.
pub type WorkFuture<'c, O> = Pin<Box<dyn Future<Output = Result<O, StoreError>> + Send + 'c>>;

/// A write's statements: run inside a transaction the group commit opened.
/// A plain function over an owned input, so a failed group can run it again.
pub type Work<I, O> = for<'c> fn(&'c I, &'c mut AnyConnection) -> WorkFuture<'c, O>;

/// Most writes committed together; bounds a transaction's size and the
/// time a write waits behind others.
const MAX_GROUP: usize = 256;
/// Writes waiting before callers wait to hand theirs over.
const QUEUE_CAPACITY: usize = 4096;

/// The handle writers send to; cloning it shares the one task.
#[derive(Clone)]
pub struct GroupCommit {
    pending: mpsc::Sender<Box<dyn Pending>>,
}

impl GroupCommit {
    /// Starts `committers` tasks that take turns gathering the waiting
    /// writes and commit each group through `pool`'s connections: one for
    /// SQLite's single writer, several where the database commits side by
    /// side (PostgreSQL), so one group's flush to disk does not hold the next.
    pub fn start(pool: AnyPool, committers: usize) -> Self {
        let (pending, waiting) = mpsc::channel(QUEUE_CAPACITY);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_groups(pool.clone(), Arc::clone(&waiting)));
        }
        Self { pending }
    }

    /// Runs `work` over `input` in the next group, answering once committed.
    pub async fn write<I, O>(&self, input: I, work: Work<I, O>) -> Result<O, StoreError>
    where
        I: Send + Sync + 'static,
        O: Send + 'static,
    {
        self.send(input, work, false).await
    }

    /// As `write`, for work that is one statement, which is atomic on its
    /// own: when no other write shares its group it runs without BEGIN and
    /// COMMIT, two round trips fewer.
    pub async fn write_statement<I, O>(&self, input: I, work: Work<I, O>) -> Result<O, StoreError>
    where
        I: Send + Sync + 'static,
        O: Send + 'static,
    {
        self.send(input, work, true).await
    }

    async fn send<I, O>(
        &self,
        input: I,
        work: Work<I, O>,
        one_statement: bool,
    ) -> Result<O, StoreError>
    where
        I: Send + Sync + 'static,
        O: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            input,
            work,
            one_statement,
            output: None,
            reply,
        });
        self.pending
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer stopped".into()))?
    }
}

/// One write waiting for its group.
#[async_trait]
trait Pending: Send {
    /// Runs the write's statements in the group's transaction, keeping the output.
    async fn run(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError>;
    /// Whether the write is one statement, atomic without a transaction.
    fn one_statement(&self) -> bool;
    /// Tells the caller how its write ended: the output if `committed` is
    /// Ok, the error otherwise.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Job<I, O> {
    input: I,
    work: Work<I, O>,
    one_statement: bool,
    output: Option<O>,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

#[async_trait]
impl<I, O> Pending for Job<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    async fn run(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        self.output = Some((self.work)(&self.input, conn).await?);
        Ok(())
    }

    fn one_statement(&self) -> bool {
        self.one_statement
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Job { output, reply, .. } = *self;
        let result = committed.and_then(|()| {
            output.ok_or_else(|| StoreError::Backend("a write committed without running".into()))
        });
        // A caller that gave up waiting is not an error: its write stands.
        let _ = reply.send(result);
    }
}

async fn commit_groups(pool: AnyPool, waiting: Arc<Mutex<mpsc::Receiver<Box<dyn Pending>>>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The lock is held while gathering only, not while committing.
    while waiting.lock().await.recv_many(&mut group, MAX_GROUP).await > 0 {
        match commit(&pool, &mut group).await {
            Err(_) if group.len() > 1 => {
                // Find the write that failed by committing each alone.
                for mut job in group.drain(..) {
                    let alone = commit(&pool, std::slice::from_mut(&mut job)).await;
                    job.answer(alone);
                }
            }
            result => {
                for job in group.drain(..) {
                    job.answer(result.clone());
                }
            }
        }
    }
}

/// Runs `jobs` in one transaction; an error rolls all of them back.
async fn commit(pool: &AnyPool, jobs: &mut [Box<dyn Pending>]) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    if let [job] = jobs
        && job.one_statement()
    {
        return job.run(&mut conn).await;
    }
    let mut tx = conn.begin().await.map_err(map_err)?;
    for job in jobs.iter_mut() {
        job.run(&mut tx).await?;
    }
    tx.commit().await.map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Executor;
    use sqlx::any::{AnyPoolOptions, install_default_drivers};

    fn insert<'c>(n: &'c i64, conn: &'c mut AnyConnection) -> WorkFuture<'c, u64> {
        Box::pin(async move {
            let q = sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(*n);
            Ok(q.execute(&mut *conn)
                .await
                .map_err(map_err)?
                .rows_affected())
        })
    }

    /// Inserts, then fails: its insert must not survive.
    fn insert_then_fail<'c>(n: &'c i64, conn: &'c mut AnyConnection) -> WorkFuture<'c, u64> {
        Box::pin(async move {
            insert(n, &mut *conn).await?;
            sqlx::query("INSERT INTO no_such_table VALUES (1)")
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            Ok(1)
        })
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_and_leaves_nothing() {
        install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/g.db?mode=rwc", dir.path().display());
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("CREATE TABLE t (n BIGINT NOT NULL)")
            .await
            .unwrap();
        let writes = GroupCommit::start(pool.clone(), 1);
        // Sent together, so they share groups with the failing writes.
        let results = write_concurrently(&writes, 200).await;
        for (n, result) in results.iter().enumerate() {
            if n % 7 == 3 {
                assert!(result.is_err(), "write {n} should fail");
            } else {
                assert_eq!(result.as_ref().unwrap(), &1, "write {n}");
            }
        }
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
        let want: Vec<i64> = (0..200).filter(|n| n % 7 != 3).collect();
        assert_eq!(
            rows, want,
            "every good write once, nothing of the failed ones"
        );
    }

    async fn write_concurrently(writes: &GroupCommit, count: i64) -> Vec<Result<u64, StoreError>> {
        let tasks: Vec<_> = (0..count)
            .map(|n| {
                let writes = writes.clone();
                let work: Work<i64, u64> = if n % 7 == 3 { insert_then_fail } else { insert };
                tokio::spawn(async move { writes.write(n, work).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    }
}
