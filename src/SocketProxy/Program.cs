using IoMux.SocketProxy;

var root = UnixCommand.Root(ProxyCommand.ProgramName, "Bidirectionally proxy local sockets to another (possibly remote) socket, on the IoMux event loop. " +
    "Drop-in for systemd-socket-proxyd: the listening sockets come by socket activation (LISTEN_FDS).");
return UnixCommand.Run(ProxyCommand.Configure(root), args);
