"""Who is asking: the gateway's authentication of people (browser sessions, personal API
tokens, OpenID Connect) and the browser-side defences that go with it (cookies, CSRF,
sign-in throttling). Services never see these credentials: they get the verified
principal, signed with the mesh key (longtail_common.mesh_identity).
"""
