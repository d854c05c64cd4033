using System.Net;
using System.Net.Sockets;

namespace IoMux.SocketProxy;

/// <summary>Where the proxy connects: <c>HOST:PORT</c>, <c>[IPv6]:PORT</c>, a Unix socket path, or (Linux) an
/// abstract Unix socket written <c>@name</c> — the forms systemd-socket-proxyd accepts.</summary>
public sealed class BackendTarget
{
    private readonly EndPoint? _fixed;

    /// <summary>sockaddr_un's sun_path is 108 bytes on Linux (104 on the BSDs and macOS), terminator included.</summary>
    private static int MaxSocketPathBytes => OperatingSystem.IsLinux() ? 107 : 103;

    private BackendTarget(string text, string? host, int port, EndPoint? fixedEndpoint)
    {
        Text = text;
        Host = host;
        Port = port;
        _fixed = fixedEndpoint;
    }

    /// <summary>The target as written on the command line.</summary>
    public string Text { get; }

    /// <summary>The host name to resolve, or null when the target is numeric or a Unix socket.</summary>
    public string? Host { get; }

    /// <summary>The TCP port (0 for a Unix socket).</summary>
    public int Port { get; }

    /// <summary>The endpoint when no name resolution is needed.</summary>
    public EndPoint? FixedEndpoint => _fixed;

    /// <summary>Parses a target. </summary>
    /// <exception cref="FormatException">Not a path, not HOST:PORT, the port is out of range, the host is empty, or the socket path is longer than sun_path.</exception>
    public static BackendTarget Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.StartsWith('/') || text.StartsWith('@'))
        {
            // UnixDomainSocketEndPoint maps a leading '@' to the abstract namespace on Linux, as systemd does.
            UnixDomainSocketEndPoint endpoint;
            try
            {
                endpoint = new UnixDomainSocketEndPoint(text);
            }
            catch (ArgumentException e)
            {
                // Longer than sun_path (108 bytes on Linux) in UTF-8: ArgumentOutOfRangeException, which the
                // command line would have shown as a crash (found by fuzzing).
                throw new FormatException($"'{text}': a socket path of at most {MaxSocketPathBytes} bytes is needed.", e);
            }
            return new BackendTarget(text, null, 0, endpoint);
        }
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
            throw new FormatException($"'{text}' is neither HOST:PORT nor a socket path.");
        string host = text[..colon];
        if (!int.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out int port) || port is < 1 or > 65535)
            throw new FormatException($"'{text}': the port must be a number from 1 to 65535.");
        if (host.StartsWith('[') && host.EndsWith(']'))
            host = host[1..^1];
        else if (host.Contains(':'))
            throw new FormatException($"'{text}': write an IPv6 address in brackets, [::1]:{port}.");
        if (host.Length == 0)
            throw new FormatException($"'{text}': the host is empty."); // "[]:80" (the fuzz corpus's seed)
        if (IPAddress.TryParse(host, out var address))
            return new BackendTarget(text, null, port, new IPEndPoint(address, port));
        return new BackendTarget(text, host, port, null);
    }

    /// <summary>Resolves the host off the loop thread (getaddrinfo blocks): every address, in the resolver's
    /// preference order (RFC 6724, as getaddrinfo sorts them).</summary>
    /// <exception cref="SocketException">The name does not resolve.</exception>
    public async Task<IReadOnlyList<EndPoint>> ResolveAllAsync(CancellationToken cancellation = default)
    {
        if (_fixed is not null)
            return [_fixed];
        if (_resolver is not null)
            return await _resolver().ConfigureAwait(false);
        var addresses = await Dns.GetHostAddressesAsync(Host!, cancellation).ConfigureAwait(false);
        if (addresses.Length == 0)
            throw new SocketException((int)SocketError.HostNotFound);
        return addresses.Select(address => (EndPoint)new IPEndPoint(address, Port)).ToArray();
    }

    private Func<Task<IReadOnlyList<EndPoint>>>? _resolver;

    /// <summary>A name target whose resolution the caller supplies (tests: a name with several addresses
    /// without editing /etc/hosts).</summary>
    internal static BackendTarget WithResolver(string name, int port, Func<Task<IReadOnlyList<EndPoint>>> resolver) =>
        new($"{name}:{port}", name, port, null) { _resolver = resolver };

    /// <inheritdoc />
    public override string ToString() => Text;
}
