using System.Net.Sockets;
using System.Text;
using IoMux.SocketProxy;

namespace IoMux.Fuzz;

// The listen-fds fuzz target (FuzzTargets.Run dispatches to it).
internal sealed partial class FuzzTargets
{
    // ---- listen-fds: SocketActivation.Parse(LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) ----

    /// <summary>The pid the fuzz inputs name (the seeds and the dictionary spell it).</summary>
    private const int ListenPid = 4242;

    /// <summary>How many descriptors the fake passes: 3, 4 and 5 are listening sockets, anything above is not.</summary>
    private const int PassedDescriptors = 3;

    private static void ListenFds(ReadOnlySpan<byte> input)
    {
        // Three variables, one a line; a missing line is an unset variable.
        var parts = Encoding.UTF8.GetString(input).Split('\n', 3);
        string? pidText = parts[0];
        string? countText = parts.Length > 1 ? parts[1] : null;
        string? namesText = parts.Length > 2 ? parts[2] : null;
        int prepared = 0;
        IReadOnlyList<SocketActivation.ListenSocket> sockets;
        try
        {
            sockets = SocketActivation.Parse(pidText, countText, namesText, ListenPid, fd =>
            {
                Require(fd == SocketActivation.FirstDescriptor + prepared, $"prepared fd {fd} out of order");
                if (fd >= SocketActivation.FirstDescriptor + PassedDescriptors)
                    throw new SocketActivationException($"fd {fd}: not a socket (EBADF).");
                prepared++;
            });
        }
        catch (SocketActivationException)
        {
            return; // documented
        }
        Require(sockets.Count >= 1 && sockets.Count == prepared, $"{sockets.Count} sockets after preparing {prepared}");
        for (int i = 0; i < sockets.Count; i++)
        {
            Require(sockets[i].Descriptor == SocketActivation.FirstDescriptor + i, $"socket {i} is fd {sockets[i].Descriptor}");
            Require(!string.IsNullOrEmpty(sockets[i].Name) && !sockets[i].Name.Contains(':'), $"socket {i} named '{sockets[i].Name}'");
        }
    }
}
