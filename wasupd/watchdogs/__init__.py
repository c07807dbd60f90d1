"""Watchdogs: resource sampling of process trees and the decisions made from it."""
