-- Version 3: an invitation is a single-use link (the SHA-256 of a secret the owner shares)
-- that expires, and invitations addressed to an e-mail count only for an account whose
-- address is proven.
ALTER TABLE invitations ADD COLUMN token_hash BLOB;
ALTER TABLE invitations ADD COLUMN expires_at INTEGER;
CREATE UNIQUE INDEX invitations_token ON invitations(token_hash) WHERE token_hash IS NOT NULL;

-- Invitations made before links existed keep working by address, for 7 days from the upgrade
-- (they have no link; an OWNER cancels and invites again to get one).
UPDATE invitations SET expires_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 604800000;

-- Until now the signup reply carried the confirmation token, so any account could "confirm"
-- an address it never received mail at: no past confirmation proves anything.
UPDATE users SET email_confirmed_at = NULL;
DELETE FROM confirmations;
