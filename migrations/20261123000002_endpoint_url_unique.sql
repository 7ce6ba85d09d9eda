-- One endpoint per URL within an account: a second one with the same URL is a 409.
CREATE UNIQUE INDEX endpoints_account_url ON endpoints (account_id, url);
