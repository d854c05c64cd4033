using IoMux.SocketProxy;

var root = UnixCommand.Root(ProxyCommand.ProgramName, "Bidirectionally proxy local sockets to another (possibly remote) socket, on the IoMux event loop. " +
    "Drop-in for systemd-socket-proxyd: the listening sockets come by socket activation (LISTEN_FDS).");
// systemd-socket-proxyd has no --verbose: marked as the other extensions are.
var verbose = root.Options.Single(option => option.Name == "--verbose");
verbose.Description = "Extension: " + verbose.Description;
return UnixCommand.Run(ProxyCommand.Configure(root), args);
