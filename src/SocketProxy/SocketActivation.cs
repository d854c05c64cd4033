using System.Globalization;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>Thrown when the listening sockets cannot be had: nothing passed, or something passed that is not a
/// listening stream socket.</summary>
public sealed class SocketActivationException(string message) : Exception(message);

/// <summary>The sd_listen_fds(3) protocol: <c>LISTEN_PID</c> names this process, <c>LISTEN_FDS</c> counts the
/// descriptors passed from fd 3 on, <c>LISTEN_FDNAMES</c> names them (colon-separated). The variables are
/// removed once read (from the C environment too, so nothing this process starts inherits them).</summary>
public static class SocketActivation
{
    /// <summary>The first passed descriptor (SD_LISTEN_FDS_START).</summary>
    public const int FirstDescriptor = 3;

    /// <summary>One passed socket.</summary>
    /// <param name="Descriptor">The fd.</param>
    /// <param name="Name">Its name from LISTEN_FDNAMES ("unknown" when none was given, as systemd says).</param>
    public readonly record struct ListenSocket(int Descriptor, string Name);

    /// <summary>Reads and removes the variables; checks each descriptor is a listening stream socket and makes it
    /// non-blocking and close-on-exec.</summary>
    /// <exception cref="SocketActivationException">Nothing was passed to this process, or a descriptor is unusable.</exception>
    /// <remarks>An array and plain loops on this path: a List or LINQ over the <see cref="ListenSocket"/> struct, and
    /// a collection expression's inline array, are generic instantiations ReadyToRun cannot precompile, JIT-compiled
    /// while the first client waits (docs/BENCHMARKS.md, start-up after socket activation).</remarks>
    public static ListenSocket[] TakeListenSockets()
    {
        string? pidText = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? countText = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? namesText = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        foreach (var name in Variables)
        {
            Environment.SetEnvironmentVariable(name, null);
            Sockets.unsetenv(name);
        }
        return Parse(pidText, countText, namesText, Sockets.getpid());
    }

    private static readonly string[] Variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

    internal static ListenSocket[] Parse(string? pidText, string? countText, string? namesText, int ownPid) =>
        Parse(pidText, countText, namesText, ownPid, PrepareListeningStream);

    /// <summary>The parse with the per-descriptor step as a seam: the fuzz targets and their corpus replay must not
    /// probe or change the descriptors of the process they run in (a test host's fd 3 can be another test's socket).</summary>
    internal static ListenSocket[] Parse(string? pidText, string? countText, string? namesText, int ownPid, Action<int> prepareDescriptor)
    {
        if (pidText is null || countText is null)
            throw new SocketActivationException(
                "No listening socket was passed (LISTEN_FDS is not set). Start under systemd socket activation or " +
                "systemd-socket-activate, or give --listen ADDRESS.");
        if (!int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid != ownPid)
            throw new SocketActivationException($"LISTEN_PID={pidText} is not this process ({ownPid}): the sockets were meant for another one.");
        if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1)
            throw new SocketActivationException($"LISTEN_FDS={countText}: no listening socket was passed.");
        // sd_listen_fds(3) refuses a count whose last descriptor would overflow an int (EINVAL).
        if (count > int.MaxValue - FirstDescriptor)
            throw new SocketActivationException($"LISTEN_FDS={countText}: more descriptors than a process can have.");
        var names = namesText?.Split(':') ?? [];
        // Every descriptor is checked before the array is made: the count is the environment's word, and
        // LISTEN_FDS=2000000000 made a list sized by it ask for 32 GB before the first descriptor was checked
        // (OutOfMemoryException; found by fuzzing). Once all are checked, they are open descriptors.
        for (int i = 0; i < count; i++)
            prepareDescriptor(FirstDescriptor + i);
        var sockets = new ListenSocket[count];
        for (int i = 0; i < count; i++)
            sockets[i] = new ListenSocket(FirstDescriptor + i, i < names.Length && names[i].Length > 0 ? names[i] : "unknown");
        return sockets;
    }

    private static void PrepareListeningStream(int fd)
    {
        CheckListeningStream(fd);
        LibC.SetNonBlockingCloseOnExec(fd);
    }

    /// <summary>The proxy relays streams: a datagram socket or a plain file passed by mistake is refused up front.</summary>
    internal static void CheckListeningStream(int fd)
    {
        int type = Sockets.GetIntOption(fd, Sockets.SOL_SOCKET, Sockets.SO_TYPE);
        if (type < 0)
            throw new SocketActivationException($"fd {fd}: not a socket ({Errno.Name(-type)}).");
        if (type != Sockets.SOCK_STREAM)
            throw new SocketActivationException($"fd {fd}: not a stream socket (type {type}).");
        // SO_ACCEPTCONN is missing on old macOS; only a definite "not listening" is an error.
        if (Sockets.GetIntOption(fd, Sockets.SOL_SOCKET, Sockets.SO_ACCEPTCONN) == 0)
            throw new SocketActivationException($"fd {fd}: the socket is not listening.");
    }
}
