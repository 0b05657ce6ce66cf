-- Issue 13, link tracking: the text a tracked link replaced in the message, where it differs from the URL a
-- click goes to (an `&amp;` in an HTML attribute, spaces inside the quotes). The message's details and dump
-- show the message as the sender wrote it (domain/links.py, `untrack`). NULL: written as the URL.
ALTER TABLE message_links ADD COLUMN written TEXT;
