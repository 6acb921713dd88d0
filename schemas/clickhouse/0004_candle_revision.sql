-- Candles corrected after they were final (issue #23): a fill the collector's reconciliation
-- finds late re-emits its candles complete, with a higher version, and counts the correction.
-- The API shows the count (`revision`, and `revised` when it is above 0). Existing rows read 0:
-- no candle was corrected before this column existed (late trades were dead-lettered).
ALTER TABLE {database}.candles ADD COLUMN IF NOT EXISTS revision UInt32 DEFAULT 0;
