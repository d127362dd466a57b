"""The LTI 1.3 tool: Moodle, Canvas, Brightspace and Open edX launch our events and replays in a course.

``launch.py`` checks an id_token (pure: token, keys, expectations and time in, a ``Launch`` or a
``Refusal`` out); ``keys.py`` our rotatable signing keys; ``registry.py`` the catalog work (platforms,
login states, account links, courses); ``platform_keys.py`` the platforms' keys, fetched with a
deadline and cached; ``deep_linking.py`` the signed response; ``tool.py`` the thin HTTP handlers.
"""
