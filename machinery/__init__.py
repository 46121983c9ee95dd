"""Shared machinery: API types, resource registry, selectors, patches, errors, PKI and client helpers.

Imports no component package; every component imports from here.
"""
