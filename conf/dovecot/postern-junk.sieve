# conf/dovecot/postern-junk.sieve: files the mail postern marked as spam
# into the recipient's Junk folder (created when missing).
#
# postern's delivery hop strips every inbound X-Postern-* header and adds
# "X-Postern-Folder: Junk" when a rule's disposition is "move to spam", so
# this header can only come from postern. Run it for every user before
# their own scripts: plugin { sieve_before = /etc/dovecot/sieve/postern-junk.sieve }
# (see README.md next to this file). Pigeonhole 0.5 (Dovecot 2.3): ":create"
# is the "mailbox" extension (RFC 5490), enabled by default.
require ["fileinto", "mailbox"];

if header :is "X-Postern-Folder" "Junk" {
  fileinto :create "Junk";
  # Spam goes to Junk only: the user's own script does not refile it.
  stop;
}
