-- A redrive claims the entries it is about to put back, so two concurrent redrives of
-- overlapping filters never send the same entry twice. A claim lapses (a redrive that died
-- part way) and the entry can be redriven again.
ALTER TABLE dead_letters ADD COLUMN redrive_claimed_until timestamptz;
