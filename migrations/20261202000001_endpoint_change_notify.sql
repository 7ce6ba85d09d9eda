-- Every change to endpoints (API, CLI, the dispatcher's disable after a 410, or by hand) tells
-- the endpoint caches of the dispatcher and retrier at once, so an endpoint created just before
-- an event gets it: the caches no longer learn of it only at their next periodic reload.
CREATE FUNCTION hookstream_notify_endpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('hookstream_endpoints', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER endpoints_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON endpoints
  FOR EACH STATEMENT EXECUTE FUNCTION hookstream_notify_endpoints();
