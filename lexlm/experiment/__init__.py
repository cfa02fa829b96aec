"""The experiment machinery every project shares: the command line (``cli``), running one
experiment into its workdir (``driver``), result identity (``identity``), the result store
and workdir layout (``store``), and the results pages (``pages``). The projects themselves
are ``lexlm.proj.<name>`` (``registry``).
"""
