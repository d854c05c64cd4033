using IoMux.Loop;
using IoMux.SocketProxy;

// Socket activation starts this program while a client waits: its meters are made a second in (ProxyCommand.Run),
// not with the first loop, so that their cost is not in the client's first byte.
MeterPublication.Defer();

// The usual command line is read without System.CommandLine (ProxyCommand.TryReadCommon says why); the rest
// (--help, --version, mistakes) goes through it, as getopt_long would read it (Getopt).
int code = ProxyCommand.TryReadCommon(args, out var options, out var listen)
    ? UnixCommand.Guard(ProxyCommand.ProgramName, args, _ => ProxyCommand.Run(options, listen))
    : Getopt.UnrecognizedWithoutTarget(args) is { } unrecognized
        ? UnixCommand.Guard(ProxyCommand.ProgramName, args, log => UnixCommand.ReportUnrecognized(log, ProxyCommand.ProgramName, unrecognized))
        : ReadWithSystemCommandLine(Getopt.Canonical(args));
// systemd-socket-proxyd exits 1 on every failure, a bad command line included (and a unit's
// RestartPreventExitStatus= or a script may test for it): no 2 here, unlike iomux's usage errors.
return code == UnixCommand.UsageError ? UnixCommand.RuntimeError : code;

// A method of its own: ReadyToRun code loads the types a method names before it runs, and the usual start needs
// none of System.CommandLine's.
static int ReadWithSystemCommandLine(string[] args)
{
    var root = UnixCommand.Root(ProxyCommand.ProgramName, "Bidirectionally proxy local sockets to another (possibly remote) socket, on the IoMux event loop. " +
        "Drop-in for systemd-socket-proxyd: the listening sockets come by socket activation (LISTEN_FDS).");
    // systemd-socket-proxyd has no --verbose: marked as the other extensions are.
    var verbose = root.Options.Single(option => option.Name == "--verbose");
    verbose.Description = "Extension: " + verbose.Description;
    return UnixCommand.Run(ProxyCommand.Configure(root), args);
}
