-- A token registered again by another account (a shared phone changing
-- users) moves its device row; what was queued for the previous account
-- must not reach the new one. A trigger does it inside the upsert itself,
-- so a registration is one statement: no transaction, one round trip to
-- the database (registerPush throughput, issue 8).
CREATE TRIGGER devices_account_moved
AFTER UPDATE OF account ON devices
FOR EACH ROW WHEN OLD.account <> NEW.account
BEGIN
    DELETE FROM deliveries WHERE device_id = NEW.id AND account <> NEW.account;
END;
