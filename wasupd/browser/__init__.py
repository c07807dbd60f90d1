"""Chromium over the DevTools pipe, and the WhatsApp Web page driver."""
