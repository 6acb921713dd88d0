//! Markets and events: Gamma (keyset, offset fallback) merged with CLOB `/markets`, emitted
//! when their content hash changes.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
    /// Every row of a Gamma listing: the keyset endpoint (preferred), or the offset listing
    /// when keyset pagination is unavailable. Open and closed rows both (`closed` defaults
    /// to false upstream).
    pub(super) async fn gamma_rows(
        &self,
        endpoint: Endpoint,
        path: &str,
        list_key: &str,
    ) -> Result<Vec<Value>, CollectError> {
        let mut rows = Vec::new();
        for closed in ["false", "true"] {
            match self.gamma_keyset(endpoint, path, list_key, closed).await {
                Ok(found) => rows.extend(found),
                Err(CollectError::Upstream(UpstreamError::Status { status, .. }))
                    if matches!(status, 404 | 422 | 501 | 503) =>
                {
                    tracing::warn!(
                        path,
                        status,
                        "keyset listing unavailable; using offset pagination"
                    );
                    rows.extend(self.gamma_offset(endpoint, path, closed).await?);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(rows)
    }

    pub(super) async fn gamma_keyset(
        &self,
        endpoint: Endpoint,
        path: &str,
        list_key: &str,
        closed: &str,
    ) -> Result<Vec<Value>, CollectError> {
        let url = format!("{}{path}/keyset", self.gamma_url);
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("limit", KEYSET_LIMIT.to_string()),
                ("closed", closed.to_owned()),
            ];
            if let Some(cursor) = &cursor {
                query.push(("after_cursor", cursor.clone()));
            }
            let (page, next) = self
                .upstream
                .get_page(endpoint, &url, &query, |body| {
                    parse::keyset_page(body, list_key)
                })
                .await?;
            rows.extend(page);
            match next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(rows),
            }
        }
    }

    pub(super) async fn gamma_offset(
        &self,
        endpoint: Endpoint,
        path: &str,
        closed: &str,
    ) -> Result<Vec<Value>, CollectError> {
        const LIMIT: usize = 500;
        let url = format!("{}{path}", self.gamma_url);
        let mut rows = Vec::new();
        loop {
            let query = [
                ("limit", LIMIT.to_string()),
                ("offset", rows.len().to_string()),
                ("closed", closed.to_owned()),
            ];
            let page = self
                .upstream
                .get_page(endpoint, &url, &query, parse::array_page)
                .await?;
            let short = page.len() < LIMIT;
            rows.extend(page);
            if short {
                return Ok(rows);
            }
        }
    }

    /// The CLOB `/markets` cursor walk (every market ever; cursor `MA==` … `LTE=`).
    pub(super) async fn clob_markets(
        &self,
    ) -> Result<HashMap<String, parse::ClobMarket>, CollectError> {
        let url = format!("{}/markets", self.clob_url);
        let mut markets = HashMap::new();
        let mut cursor = "MA==".to_owned();
        let mut rejected = Vec::new();
        loop {
            let query = [("next_cursor", cursor.clone())];
            let (rows, next) = self
                .upstream
                .get_page(Endpoint::ClobMarkets, &url, &query, parse::clob_page)
                .await?;
            for row in rows {
                match parse::clob_market(&row) {
                    Ok(market) => {
                        markets.insert(market.condition_id.clone(), market);
                    }
                    Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
                }
            }
            match next {
                Some(next) if next != cursor => cursor = next,
                _ => break,
            }
        }
        self.dead_letter(Endpoint::ClobMarkets, &url, rejected)
            .await?;
        Ok(markets)
    }

    /// Crawls events and markets, emits those whose content changed, and returns every market.
    pub async fn crawl_markets(
        &self,
        emit_markets: bool,
        emit_events: bool,
    ) -> Result<Vec<Market>, CollectError> {
        let now = now_ms();
        let event_rows = self
            .gamma_rows(Endpoint::GammaEvents, "/events", "events")
            .await?;
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for row in event_rows {
            match parse::gamma_event(&row, now) {
                Ok(event) => events.push(event),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        let origin = format!("{}/events/keyset", self.gamma_url);
        self.dead_letter(Endpoint::GammaEvents, &origin, rejected)
            .await?;
        // The same event can appear in both the open and the closed walk while it changes.
        let mut unique_events: HashMap<String, Event> = HashMap::new();
        for event in events {
            unique_events.insert(event.event_id.clone(), event);
        }
        let events: Vec<Event> = unique_events.into_values().collect();

        let market_rows = self
            .gamma_rows(Endpoint::GammaMarkets, "/markets", "markets")
            .await?;
        let clob = self.clob_markets().await?;
        let event_index = parse::event_index(&events);
        let mut markets: HashMap<String, Market> = HashMap::new();
        let mut rejected = Vec::new();
        for row in market_rows {
            match parse::gamma_market(&row) {
                Ok(mut market) => {
                    if let Some(clob) = clob.get(&market.condition_id) {
                        parse::merge_clob(&mut market, clob);
                    }
                    if let Some(event_ids) = event_index.get(&market.condition_id) {
                        market.event_ids.extend(event_ids.iter().cloned());
                    }
                    let market = parse::finish_market(market, now);
                    markets.insert(market.condition_id.clone(), market);
                }
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        let origin = format!("{}/markets/keyset", self.gamma_url);
        self.dead_letter(Endpoint::GammaMarkets, &origin, rejected)
            .await?;
        let mut markets: Vec<Market> = markets.into_values().collect();
        markets.sort_by(|left, right| left.condition_id.cmp(&right.condition_id));
        // Replaced, not merged: the maps hold what the latest crawl listed and nothing older.
        let ticks: HashMap<String, rust_decimal::Decimal> = markets
            .iter()
            .filter_map(|market| Some((market.condition_id.clone(), market.tick_size?)))
            .collect();
        *lock(&self.ticks) = ticks;
        let tokens: HashMap<String, Vec<String>> = markets
            .iter()
            .map(|market| {
                let tokens = market
                    .tokens
                    .iter()
                    .map(|token| token.token_id.clone())
                    .collect();
                (market.condition_id.clone(), tokens)
            })
            .collect();
        *lock(&self.market_tokens) = tokens;

        if emit_events {
            let changed: Vec<Event> = events
                .into_iter()
                .filter(|event| {
                    self.changed(&format!("events/{}", event.event_id), &event.content_hash)
                })
                .collect();
            self.events.send_all(&changed).await?;
            self.events_sent
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.events.topic(),
                count: changed.len(),
            }
            .emit();
            self.commit_hashes(changed.iter().map(|event| {
                (
                    format!("events/{}", event.event_id),
                    event.content_hash.clone(),
                )
            }))
            .await?;
        }
        if emit_markets {
            let changed: Vec<Market> = markets
                .iter()
                .filter(|market| {
                    self.changed(
                        &format!("markets/{}", market.condition_id),
                        &market.content_hash,
                    )
                })
                .cloned()
                .collect();
            self.markets.send_all(&changed).await?;
            self.markets_sent
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.markets.topic(),
                count: changed.len(),
            }
            .emit();
            self.commit_hashes(changed.iter().map(|market| {
                (
                    format!("markets/{}", market.condition_id),
                    market.content_hash.clone(),
                )
            }))
            .await?;
        }
        Ok(markets)
    }

    pub(super) fn changed(&self, key: &str, hash: &str) -> bool {
        self.checkpoints.get::<String>(key).as_deref() != Some(hash)
    }

    pub(super) async fn commit_hashes(
        &self,
        hashes: impl Iterator<Item = (String, String)>,
    ) -> Result<(), CollectError> {
        let hashes: Vec<(String, String)> = hashes.collect();
        let commits = hashes
            .iter()
            .map(|(key, hash)| self.checkpoints.commit(key, hash));
        futures::future::try_join_all(commits).await?;
        Ok(())
    }

    // ---------------------------------------------------------------------------- trades
}
