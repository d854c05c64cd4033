using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace IoMux.SocketProxy;

/// <summary>Where the proxy connects, in systemd-socket-proxyd's forms: <c>HOST:PORT</c> (the port may be a service
/// name, <c>::1:PORT</c> is IPv6), <c>HOST</c> alone (port 80), a Unix socket path, or (Linux) an abstract Unix
/// socket written <c>@name</c>; and IoMux's <c>[IPv6]:PORT</c>.</summary>
public sealed partial class BackendTarget
{
    private readonly EndPoint? _fixed;

    /// <summary>sockaddr_un's sun_path less its terminator (<c>OsAbi.SunPathLength</c>: 108 on Linux and
    /// illumos, 104 on the BSDs and macOS).</summary>
    private static int MaxSocketPathBytes { get; } = Interop.OsAbi.SunPathLength(Interop.Platform.Flavor) - 1;

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
    /// <exception cref="FormatException">The port is out of range or an unknown service, the host is empty or not a
    /// name, or the socket path is longer than sun_path.</exception>
    public static BackendTarget Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.StartsWith('/') || text.StartsWith('@'))
            return new BackendTarget(text, null, 0, UnixEndpoint(text));
        // As systemd-socket-proxyd's resolve_remote: the host is what comes before the last ':', the service
        // what comes after it (a port or a name from the services database); without a ':' the service is 80.
        // So "::1:8080" is ::1 port 8080 and "localhost" is localhost port 80. IoMux also takes "[::1]:8080"
        // (systemd 252 hands "[::1]" to getaddrinfo, which never resolves it: no clash).
        int colon = text.LastIndexOf(':');
        string host = colon < 0 ? text : text[..colon];
        int port = colon < 0 ? 80 : ServicePort(text, text[(colon + 1)..]);
        if (host.StartsWith('[') && host.EndsWith(']'))
            host = host[1..^1];
        if (host.Length == 0)
            throw new FormatException($"'{text}': the host is empty."); // ":80", "[]:80" (the fuzz corpus's seed)
        if (IPAddress.TryParse(host, out var address))
            return new BackendTarget(text, null, port, new IPEndPoint(address, port));
        // A name with a ':' in it is no host name, and getaddrinfo would fail it for every client: said now.
        if (host.Contains(':') || host.Contains('[') || host.Contains(']'))
            throw new FormatException($"'{text}': '{host}' is neither an IP address nor a host name.");
        return new BackendTarget(text, host, port, null);
    }

    /// <summary>The TCP port <paramref name="service"/> names: a number from 1 to 65535, or a service name that the
    /// services database (/etc/services, through getservbyname as getaddrinfo looks it up) gives a TCP port.</summary>
    private static int ServicePort(string text, string service)
    {
        if (service.Length > 0 && char.IsAsciiDigit(service[0]))
        {
            if (!int.TryParse(service, System.Globalization.NumberStyles.None, null, out int port) || port is < 1 or > 65535)
                throw new FormatException($"'{text}': the port must be a number from 1 to 65535 or a service name.");
            return port;
        }
        if (service.Length > 0 && !OperatingSystem.IsWindows())
        {
            nint entry = getservbyname(service, "tcp");
            if (entry != 0)
            {
                // struct servent { char *s_name; char **s_aliases; int s_port; char *s_proto; }, s_port in network order.
                int raw = Marshal.ReadInt32(entry, 2 * IntPtr.Size);
                int port = (ushort)IPAddress.NetworkToHostOrder((short)raw);
                if (port > 0)
                    return port;
            }
        }
        throw new FormatException($"'{text}': '{service}' is neither a port (1-65535) nor a TCP service in the services database.");
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint getservbyname(string name, string protocol);

    /// <summary>The Unix socket <paramref name="text"/> names, as systemd's sockaddr_un_set_path reads it: a path, or
    /// with a leading '@' a name in Linux's abstract namespace. An abstract address is sun_path with a NUL byte
    /// first and the name after it, its length offsetof(sun_path) + 1 + strlen(name), no terminating NUL counted:
    /// the name is exactly those bytes, so a listener bound by systemd or by another program finds the same socket.
    /// (.NET keeps a leading '@' as part of a pathname: "@name" alone would connect to a file called "@name".)
    /// As systemd, the text (with its '@') must fit sun_path with a NUL after it.</summary>
    private static UnixDomainSocketEndPoint UnixEndpoint(string text)
    {
        if (text.Length < 2)
            throw new FormatException($"'{text}': a socket path or an abstract socket name is needed.");
        int bytes = System.Text.Encoding.UTF8.GetByteCount(text);
        if (bytes > MaxSocketPathBytes)
            throw new FormatException($"'{text}': a socket path of at most {MaxSocketPathBytes} bytes is needed.");
        if (text[0] == '@')
        {
            if (!OperatingSystem.IsLinux())
                throw new FormatException($"'{text}': abstract sockets (@name) exist only on Linux.");
            // UnixDomainSocketEndPoint serializes a path starting with NUL without a terminator: the length above.
            return new UnixDomainSocketEndPoint("\0" + text[1..]);
        }
        try
        {
            return new UnixDomainSocketEndPoint(text);
        }
        catch (ArgumentException e)
        {
            // Longer than sun_path in UTF-8 (checked above; kept for any other refusal): ArgumentOutOfRangeException,
            // which the command line would have shown as a crash (found by fuzzing).
            throw new FormatException($"'{text}': a socket path of at most {MaxSocketPathBytes} bytes is needed.", e);
        }
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
