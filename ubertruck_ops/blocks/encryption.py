"""How backups are encrypted: a symmetric passphrase, or GnuPG public keys."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass


class BackupEncryption(SchemaOncePerClass, Block):
    """The key material for backups.

    With `recipients`, the backup host holds only public keys and cannot decrypt what it
    wrote; the private key is given to the restore host alone (`private_key`).
    """

    _block_type_name = "Ubertruck Backup Encryption"
    _block_type_slug = "ubertruck-backup-encryption"
    _description = "GnuPG settings for backups: a passphrase (AES256) or public-key recipients."

    passphrase: SecretStr | None = Field(default=None, title="Passphrase",
                                         description="Symmetric passphrase (AES256). Set this or recipients.")
    recipients: list[str] = Field(default_factory=list, title="Recipients",
                                  description="Key ids, fingerprints or emails of the public keys to encrypt to.")
    public_keys: str | None = Field(default=None, title="Public keys",
                                    description="ASCII-armoured public keys of the recipients (not secret).")
    private_key: SecretStr | None = Field(default=None, title="Private key",
                                          description="ASCII-armoured private key; only on hosts that restore.")
    private_key_passphrase: SecretStr | None = Field(default=None, title="Private key passphrase",
                                                     description="Passphrase protecting the private key, if any.")

    @model_validator(mode="after")
    def _one_mode(self) -> BackupEncryption:
        if bool(self.passphrase) == bool(self.recipients):
            raise ValueError("set exactly one of BACKUP_ENCRYPTION_KEY (passphrase) or BACKUP_GPG_RECIPIENTS (public keys)")
        if self.recipients and not self.public_keys:
            raise ValueError("public-key encryption needs the recipients' armoured public keys (BACKUP_GPG_PUBLIC_KEYS)")
        return self

    @property
    def mode(self) -> str:
        return "symmetric" if self.passphrase else "public-key"
