"""Data contracts of the core-banking raw extract and the quarantine they feed.

``raw`` is the extract's physical layout, ``reference`` its category codes,
``rules`` the pandera contracts and ``quarantine`` the split into accepted and
quarantined rows. Import from the submodules: this package stays light so the
generator does not pay for pandera.
"""
