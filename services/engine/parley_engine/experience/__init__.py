"""Symbl's Experience API: ``POST /v1/conversations/{conversationId}/experiences`` answers with the URL of a
summary page the engine serves itself.

``request`` (what a caller may ask for, validated as Symbl documents it), ``signing`` (the page URL's token: an HMAC
over the conversation, the page's options and its expiry, so the page needs no access token), ``theme`` (custom
colours made readable), ``timeline``, ``charts`` and ``page`` (what the page shows), ``router`` (the API, the page,
its media and its assets). The templates and assets ship in this package: the page fetches nothing from the internet.
"""
