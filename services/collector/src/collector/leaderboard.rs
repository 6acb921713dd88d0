//! Leaderboard snapshots: every period × category × order list, each wallet once per list.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
    /// One leaderboard snapshot: every (period, category, ordering) list down to
    /// `leaderboard_depth` rows, all stamped with the snapshot's start time. Skipped when the
    /// last complete snapshot (a checkpoint, committed after Kafka acknowledged every row) is
    /// younger than `leaderboard_interval`, unless `force`. Returns the rows sent.
    pub async fn collect_leaderboard(&self, force: bool) -> Result<u64, CollectError> {
        let snapshot_ms = now_ms();
        let interval_ms =
            i64::try_from(self.tuning.leaderboard_interval.as_millis()).unwrap_or(i64::MAX);
        if !force
            && let Some(last) = self.checkpoints.get::<i64>(LEADERBOARD_CHECKPOINT)
            && snapshot_ms.saturating_sub(last) < interval_ms
        {
            return Ok(0);
        }
        let lists: Vec<parse::LeaderboardList> = LEADERBOARD_PERIODS
            .iter()
            .flat_map(|period| {
                LEADERBOARD_CATEGORIES.iter().flat_map(move |category| {
                    LEADERBOARD_ORDERS
                        .iter()
                        .map(move |order_by| parse::LeaderboardList {
                            period,
                            category,
                            order_by,
                        })
                })
            })
            .collect();
        // Each list is a sequential page walk whose pages are also produced to Kafka: at the
        // Data general budget (97 pages/s) that needs more lists in flight than markets.
        let results: Vec<Result<u64, CollectError>> = futures::stream::iter(lists)
            .map(|list| async move { self.leaderboard_list(list, snapshot_ms).await })
            .buffer_unordered(self.tuning.concurrency.max(1) * 4)
            .collect()
            .await;
        let mut sent = 0;
        let mut complete = true;
        for result in results {
            match result {
                Ok(count) => sent += count,
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "leaderboard list incomplete; the next snapshot retries");
                    complete = false;
                }
                Err(error) => return Err(error),
            }
        }
        if complete {
            self.checkpoints
                .commit(LEADERBOARD_CHECKPOINT, &snapshot_ms)
                .await?;
        }
        Ok(sent)
    }

    pub(super) async fn leaderboard_list(
        &self,
        list: parse::LeaderboardList,
        snapshot_ms: i64,
    ) -> Result<u64, CollectError> {
        let url = format!("{}/v1/leaderboard", self.data_url);
        let depth = self
            .tuning
            .leaderboard_depth
            .min(LEADERBOARD_MAX_OFFSET + LEADERBOARD_PAGE);
        let mut offset = 0;
        let mut sent = 0;
        // Ranks shift while the list is paged: a wallet read twice keeps its first (best) row.
        let mut tally = ListTally::default();
        while offset < depth && offset <= LEADERBOARD_MAX_OFFSET {
            let limit = LEADERBOARD_PAGE.min(depth - offset);
            let query = [
                ("timePeriod", list.period.to_owned()),
                ("category", list.category.to_owned()),
                ("orderBy", list.order_by.to_owned()),
                ("limit", limit.to_string()),
                ("offset", offset.to_string()),
            ];
            let rows = self
                .upstream
                .get_page(Endpoint::DataLeaderboard, &url, &query, parse::array_page)
                .await?;
            let mut entries = Vec::with_capacity(rows.len());
            let mut rejected = Vec::new();
            for row in &rows {
                match parse::leaderboard_entry(row, list, snapshot_ms) {
                    Ok(entry) => entries.push(entry),
                    Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
                }
            }
            let entries = tally.admit(entries);
            self.leaderboard.send_all(&entries).await?;
            let origin = format!(
                "{url}?timePeriod={}&category={}&orderBy={}&offset={offset}",
                list.period, list.category, list.order_by
            );
            self.dead_letter(Endpoint::DataLeaderboard, &origin, rejected)
                .await?;
            self.leaderboard_sent
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.leaderboard.topic(),
                count: entries.len(),
            }
            .emit();
            sent += entries.len() as u64;
            if rows.len() < limit as usize {
                break;
            }
            offset += limit;
        }
        LeaderboardListRead {
            list: &format!("{}/{}/{}", list.period, list.category, list.order_by),
            duplicates: tally.duplicates(),
            missing_ranks: tally.missing_ranks(),
        }
        .emit();
        Ok(sent)
    }

    // ----------------------------------------------------------------------------- rounds
}
