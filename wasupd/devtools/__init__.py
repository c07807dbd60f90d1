"""The DevTools transport: the pipe to Chromium (fd 3/4) and pyppeteer's Browser over it.

Below both the supervision (which launches and stops browsers) and the WhatsApp driver (which
drives the page): neither knows the other through this package.
"""
